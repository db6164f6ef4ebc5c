// Rotary position embedding with interleaved pairs (GPT-J style, vLLM is_neox_style=False):
// for each vector v of `dim` values and each pair i < dim/2, with a = pos · inv_freq[i]:
//   out[2i]   = (v[2i]·cos a − v[2i+1]·sin a) · attn_factor
//   out[2i+1] = (v[2i+1]·cos a + v[2i]·sin a) · attn_factor
// x and out are in the context's activation dtype and may alias (in place). The model computes
// inv_freq (plain or YaRN) once; see coordinator/model/rope_table.h.
#pragma once

#include <cmath>
#include <cstdint>

#include "kernels/exec_context.h"
#include "kernels/host_device.h"

namespace dsv2 {

struct RopeArgs {
  void* x = nullptr;  // [n_tokens, n_vecs, ...]
  int64_t n_tokens = 0;
  int64_t n_vecs = 1;                  // vectors per token (heads), `vec_stride` apart
  int64_t token_stride = 0;            // elements between tokens
  int64_t vec_stride = 0;              // elements between vectors of one token
  int64_t dim = 0;                     // rotary dims (even)
  const int32_t* positions = nullptr;  // [n_tokens]
  const float* inv_freq = nullptr;     // [dim / 2]
  float attn_factor = 1.0f;
  void* out = nullptr;  // null: in place; else its own layout below
  int64_t out_token_stride = 0;
  int64_t out_vec_stride = 0;
};

// One rotated pair, shared by both twins. Angles as torch float32: float(pos) · inv_freq[i].
struct RotatedPair {
  float first, second;
};
DSV2_HD RotatedPair RotatePair(float x0, float x1, float cos_a, float sin_a, float factor) {
  return {(x0 * cos_a - x1 * sin_a) * factor, (x1 * cos_a + x0 * sin_a) * factor};
}

namespace cpu {
void ApplyRope(const CpuContext& ctx, const RopeArgs& args);
}
namespace cuda {
void ApplyRope(CudaContext& ctx, const RopeArgs& args);
}

inline void ApplyRope(const ExecContext& ctx, const RopeArgs& args) {
  if (ctx.on_cuda()) return cuda::ApplyRope(ctx.cuda(), args);
  cpu::ApplyRope(ctx.cpu(), args);
}

}  // namespace dsv2
