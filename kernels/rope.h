// Rotary position embedding with interleaved pairs (GPT-J style, vLLM is_neox_style=False):
// for each vector v of `dim` values and each pair i < dim/2, with a = pos · inv_freq[i]:
//   v[2i]   ← (v[2i]·cos a − v[2i+1]·sin a) · attn_factor
//   v[2i+1] ← (v[2i+1]·cos a + v[2i]·sin a) · attn_factor
// The model computes inv_freq (plain or YaRN) once; see coordinator/model/rope_table.h.
#pragma once

#include <cstdint>

#include "kernels/cpu_context.h"

namespace dsv2 {

struct RopeArgs {
  float* x = nullptr;                // [n_tokens, n_vecs, ...] rotated in place
  int64_t n_tokens = 0;
  int64_t n_vecs = 1;                // vectors per token (heads), `vec_stride` apart
  int64_t token_stride = 0;          // elements between tokens
  int64_t vec_stride = 0;            // elements between vectors of one token
  int64_t dim = 0;                   // rotary dims (even)
  const int32_t* positions = nullptr;  // [n_tokens]
  const float* inv_freq = nullptr;     // [dim / 2]
  float attn_factor = 1.0f;
};

void ApplyRope(const CpuContext& ctx, const RopeArgs& args);

}  // namespace dsv2
