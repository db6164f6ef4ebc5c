#include "common/weight_binder.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"

namespace dsv2 {

absl::StatusOr<const TensorInfo*> WeightBinder::Get(const std::string& name,
                                                    std::vector<int64_t> shape) {
  const TensorInfo* t = ckpt_.Find(name);
  if (t == nullptr) {
    return absl::NotFoundError(absl::StrCat("checkpoint ", ckpt_.path(), ": tensor '", name,
                                            "' is missing (expected shape [",
                                            absl::StrJoin(shape, ", "), "])"));
  }
  if (t->shape != shape) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor '", name, "' in ", t->file, " has shape ", t->ShapeString(),
                     ", expected [", absl::StrJoin(shape, ", "), "] from config.json"));
  }
  if (!t->dtype ||
      (*t->dtype != DType::kBF16 && *t->dtype != DType::kF16 && *t->dtype != DType::kF32)) {
    return absl::InvalidArgumentError(absl::StrCat("tensor '", name, "' in ", t->file,
                                                   " has dtype ", t->dtype_name,
                                                   ", expected BF16, F16 or F32"));
  }
  bytes_ += t->nbytes;
  return t;
}

absl::StatusOr<WeightView> WeightBinder::Matrix(const std::string& name, int64_t rows,
                                                int64_t cols) {
  DSV2_ASSIGN_OR_RETURN(const TensorInfo* t, Get(name, {rows, cols}));
  return WeightView{t->data, *t->dtype, rows, cols, cols};
}

absl::StatusOr<std::vector<float>> WeightBinder::Vector(const std::string& name, int64_t n) {
  DSV2_ASSIGN_OR_RETURN(const TensorInfo* t, Get(name, {n}));
  std::vector<float> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = LoadAsFloat(t->data, *t->dtype, i);
  return v;
}

absl::StatusOr<MlpWeights> WeightBinder::Mlp(const std::string& prefix, int64_t width,
                                             int64_t hidden) {
  MlpWeights m;
  DSV2_ASSIGN_OR_RETURN(m.gate, Matrix(prefix + ".gate_proj.weight", width, hidden));
  DSV2_ASSIGN_OR_RETURN(m.up, Matrix(prefix + ".up_proj.weight", width, hidden));
  DSV2_ASSIGN_OR_RETURN(m.down, Matrix(prefix + ".down_proj.weight", hidden, width));
  return m;
}

}  // namespace dsv2
