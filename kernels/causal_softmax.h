// CausalSoftmax: the softmax of a block of attention scores under the causal mask. Row i of
// `scores` ([rows, cols] float32, rows `score_stride` apart) is query i of a block whose keys
// 0 .. first_valid + i − 1 it may see: p[i, j] = e^(scale·s[i, j] − m) / Σ for those j (m their
// maximum, all in float32), and 0 for the masked rest, written in the activation dtype (the next
// GEMM's operand). CPU only: the expanded prefill attention that uses it runs on the CPU (on a
// GPU every token takes the absorbed kernel, kernels/mla_attention.h).
#pragma once

#include <cstdint>

#include "kernels/cpu_context.h"

namespace dsv2 {

struct CausalSoftmaxArgs {
  const float* scores = nullptr;  // [rows, cols]
  int64_t score_stride = 0;
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t first_valid = 1;  // keys row 0 sees (>= 1); row i sees first_valid + i (at most cols)
  float scale = 1.0f;
  void* p = nullptr;  // [rows, cols] in the context's activation dtype
  int64_t p_stride = 0;
};

namespace cpu {
void CausalSoftmax(const CpuContext& ctx, const CausalSoftmaxArgs& args);
}

}  // namespace dsv2
