#include "kernels/rms_norm.h"

#include <algorithm>
#include <cmath>

#include "kernels/check.h"
#include "kernels/cpu/act_types.h"

namespace dsv2::cpu {
namespace {

// One row: y = act(act(x · rsqrt(mean(x²) + eps)) · weight), computed as torch does in float32
// (the sum of squares is kept in double, which only makes it closer to torch's pairwise sum).
// The rounding points are the CUDA twin's; in float32 they are no-ops.
template <typename T>
void RmsNormRow(const T* x, T* y, const float* weight, int64_t dim, float eps) {
  double sum_sq = 0.0;
  for (int64_t i = 0; i < dim; ++i) {
    const double v = ToFloat(x[i]);
    sum_sq += v * v;
  }
  const float mean_sq = static_cast<float>(sum_sq / static_cast<double>(dim));
  const float inv_rms = 1.0f / std::sqrt(mean_sq + eps);
  for (int64_t i = 0; i < dim; ++i) {
    y[i] = FromFloat<T>(weight[i] * RoundTo<T>(ToFloat(x[i]) * inv_rms));
  }
}

}  // namespace

void RmsNorm(const CpuContext& ctx, const RmsNormArgs& a) {
  DSV2_CHECK(a.n >= 0 && a.dim >= 0);
  if (a.n == 0 || a.dim == 0) return;
  DSV2_CHECK(a.x != nullptr && a.y != nullptr && a.weight != nullptr);
  DSV2_CHECK(a.n == 1 || (a.x_stride >= a.dim && a.y_stride >= a.dim));
  DSV2_CHECK_MSG(a.add == nullptr || a.y != a.x, "RmsNorm: y may alias x only without add");
  DispatchAct(ctx.act_dtype(), [&](auto tag) {
    using T = decltype(tag);
    T* x = const_cast<T*>(static_cast<const T*>(a.x));  // written only with add
    const T* add = static_cast<const T*>(a.add);
    T* y = static_cast<T*>(a.y);
    // A row is cheap: only hand rows to other threads when there are many of them.
    const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 15) / a.dim);
    ctx.ParallelFor(a.n, grain, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        T* xr = x + r * a.x_stride;
        if (add != nullptr) {  // the residual stream, in T
          const T* ar = add + r * a.x_stride;
          for (int64_t i = 0; i < a.dim; ++i) xr[i] = FromFloat<T>(ToFloat(xr[i]) + ToFloat(ar[i]));
        }
        RmsNormRow(xr, y + r * a.y_stride, a.weight, a.dim, a.eps);
      }
    });
  });
}

}  // namespace dsv2::cpu
