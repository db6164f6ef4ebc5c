#include "kernels/fill_random.h"

#include "kernels/check.h"

namespace dsv2::cpu {

void FillRandom(const CpuContext& ctx, const FillRandomArgs& a) {
  DSV2_CHECK(a.n >= 0 && (a.n == 0 || a.out != nullptr));
  DSV2_CHECK_MSG(a.dtype == DType::kF32 || a.dtype == DType::kBF16,
                 "FillRandom: dtype must be F32 or BF16");
  ctx.ParallelFor(a.n, 1 << 16, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const float v = a.offset + a.scale * RandomUniform(a.seed, static_cast<uint64_t>(i));
      if (a.dtype == DType::kF32) {
        static_cast<float*>(a.out)[i] = v;
      } else {
        static_cast<uint16_t*>(a.out)[i] = FloatToBf16(v);
      }
    }
  });
}

}  // namespace dsv2::cpu
