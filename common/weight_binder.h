// Binds checkpoint tensors by name, checking shape and dtype; errors name the tensor, its file
// and what config.json implies. Counts the bytes it bound.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/gated_mlp.h"
#include "common/safetensors.h"
#include "kernels/weight_view.h"

namespace dsv2 {

class WeightBinder {
 public:
  explicit WeightBinder(const Checkpoint& ckpt) : ckpt_(ckpt) {}

  // The tensor `name` with exactly `shape` and a float dtype (BF16, F16, F32).
  absl::StatusOr<const TensorInfo*> Get(const std::string& name, std::vector<int64_t> shape);
  // A [rows, cols] matrix used in place.
  absl::StatusOr<WeightView> Matrix(const std::string& name, int64_t rows, int64_t cols);
  // A small vector converted to float32.
  absl::StatusOr<std::vector<float>> Vector(const std::string& name, int64_t n);
  // prefix.{gate,up,down}_proj.weight of a gated MLP of `width`.
  absl::StatusOr<MlpWeights> Mlp(const std::string& prefix, int64_t width, int64_t hidden);

  int64_t bytes() const { return bytes_; }

 private:
  const Checkpoint& ckpt_;
  int64_t bytes_ = 0;
};

}  // namespace dsv2
