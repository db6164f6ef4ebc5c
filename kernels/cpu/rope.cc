#include "kernels/rope.h"

#include <algorithm>
#include <cmath>

#include "kernels/check.h"
#include "kernels/cpu/act_types.h"

namespace dsv2::cpu {
namespace {

constexpr int64_t kPairsPerBlock = 64;  // cos/sin computed once per token for this many pairs

// Rotates every vector of token t. Angles as torch float32: float(pos) · inv_freq[i], then
// cos/sin in float.
template <typename T>
void RopeToken(const RopeArgs& a, int64_t t) {
  const T* in = static_cast<const T*>(a.x) + t * a.token_stride;
  T* out = a.out == nullptr ? static_cast<T*>(a.x) + t * a.token_stride
                            : static_cast<T*>(a.out) + t * a.out_token_stride;
  const int64_t out_vec_stride = a.out == nullptr ? a.vec_stride : a.out_vec_stride;
  const int32_t pos = a.positions[t];
  float cos_a[kPairsPerBlock], sin_a[kPairsPerBlock];
  const int64_t pairs = a.dim / 2;
  for (int64_t p0 = 0; p0 < pairs; p0 += kPairsPerBlock) {
    const int64_t np = std::min(kPairsPerBlock, pairs - p0);
    for (int64_t i = 0; i < np; ++i) {
      const float angle = static_cast<float>(pos) * a.inv_freq[p0 + i];
      cos_a[i] = std::cos(angle);
      sin_a[i] = std::sin(angle);
    }
    for (int64_t v = 0; v < a.n_vecs; ++v) {
      const T* x = in + v * a.vec_stride + 2 * p0;  // [np, 2]
      T* y = out + v * out_vec_stride + 2 * p0;     // [np, 2]
      for (int64_t i = 0; i < np; ++i) {
        const RotatedPair r =
            RotatePair(ToFloat(x[2 * i]), ToFloat(x[2 * i + 1]), cos_a[i], sin_a[i], a.attn_factor);
        y[2 * i] = FromFloat<T>(r.first);
        y[2 * i + 1] = FromFloat<T>(r.second);
      }
    }
  }
}

}  // namespace

void ApplyRope(const CpuContext& ctx, const RopeArgs& a) {
  DSV2_CHECK(a.n_tokens >= 0 && a.n_vecs >= 0 && a.dim >= 0);
  DSV2_CHECK_MSG(a.dim % 2 == 0, "ApplyRope: dim must be even");
  if (a.n_tokens == 0 || a.n_vecs == 0 || a.dim == 0) return;
  DSV2_CHECK(a.x != nullptr && a.positions != nullptr && a.inv_freq != nullptr);
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 14) / (a.n_vecs * a.dim));
  DispatchAct(ctx.act_dtype(), [&](auto tag) {
    ctx.ParallelFor(a.n_tokens, grain, [&](int64_t begin, int64_t end) {
      for (int64_t t = begin; t < end; ++t) RopeToken<decltype(tag)>(a, t);
    });
  });
}

}  // namespace dsv2::cpu
