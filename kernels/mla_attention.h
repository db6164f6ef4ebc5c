// MLA attention in the absorbed form (REFERENCE.md §3): multi-query attention whose keys are
// the cached [c_norm | k_pe] rows (kv_lora_rank + rope_dim values) and whose values are the
// c_norm part, shared by all heads. For query token t of a sequence, at position p, head h:
//   score[j] = (q_lat[t,h] · c_norm[j] + q_pe[t,h] · k_pe[j]) · softmax_scale,  j = 0..p
//   o_lat[t,h] = Σ_j softmax(score)[j] · c_norm[j]        (softmax in float32)
// Causal by construction: a query attends to its sequence's rows 0..its own position, so one
// call serves decode tokens and prefill chunks alike. The cache is paged: row j of a sequence
// lives in page block_tables[table][j / page_size], slot j % page_size. The caller has already
// written the rows of the query tokens themselves (LatentCacheWrite).
//
// CUDA: a query's rows are split across thread blocks in spans the launcher sizes; each block
// keeps a running max and sum (online softmax) and the partial results are merged
// (flash-decoding), so one long sequence still fills the GPU.
#pragma once

#include <cstdint>

#include "kernels/exec_context.h"

namespace dsv2 {

// One layer of the latent cache: [num_pages, page_size, row_dim] in `dtype` (the activation
// dtype of the run) on the context's device.
struct LatentCacheLayerView {
  void* base = nullptr;  // page 0 of this layer
  DType dtype = DType::kF32;
  int64_t page_stride = 0;  // elements between pages
  int64_t page_size = 0;    // rows per page
  int64_t row_dim = 0;      // kv_lora_rank + rope_dim
};

struct MlaAttentionArgs {
  const void* q = nullptr;  // [n_tokens, n_heads, kv_lora_rank + rope_dim]: q_lat | q_pe
  void* out = nullptr;      // [n_tokens, n_heads, kv_lora_rank]: o_lat
  int64_t n_tokens = 0;
  int64_t n_heads = 0;
  int64_t kv_lora_rank = 0;
  int64_t rope_dim = 0;
  const int32_t* positions = nullptr;     // [n_tokens]
  const int32_t* token_table = nullptr;   // [n_tokens]: which block table the token reads
  const int32_t* block_tables = nullptr;  // [n_tables, max_pages]: page ids per sequence
  int64_t max_pages = 0;                  // row stride of block_tables
  int32_t max_position = 0;               // max over positions (host-known; sizes the split)
  LatentCacheLayerView cache;
  float softmax_scale = 1.0f;
};

namespace cpu {
void MlaAttention(const CpuContext& ctx, const MlaAttentionArgs& args);
}
namespace cuda {
void MlaAttention(CudaContext& ctx, const MlaAttentionArgs& args);
}

inline void MlaAttention(const ExecContext& ctx, const MlaAttentionArgs& args) {
  if (ctx.on_cuda()) return cuda::MlaAttention(ctx.cuda(), args);
  cpu::MlaAttention(ctx.cpu(), args);
}

}  // namespace dsv2
