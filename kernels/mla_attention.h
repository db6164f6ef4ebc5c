// MLA attention in the absorbed form (REFERENCE.md §3): multi-query attention whose keys are
// the cached [c_norm | k_pe] rows (kv_lora_rank + rope_dim values) and whose values are the
// c_norm part, shared by all heads. For query token t of a sequence, at position p, head h:
//   score[j] = (q_lat[t,h] · c_norm[j] + q_pe[t,h] · k_pe[j]) · softmax_scale,  j = 0..p
//   o_lat[t,h] = Σ_j softmax(score)[j] · c_norm[j]
// The cache is paged: row j of a sequence lives in page block_table[j / page_size], slot
// j % page_size. The caller has already written the rows of the query tokens themselves.
#pragma once

#include <cstdint>

#include "kernels/cpu_context.h"

namespace dsv2 {

struct LatentCacheLayerView {
  const float* base = nullptr;  // page 0 of this layer
  int64_t page_stride = 0;      // elements between pages
  int64_t page_size = 0;        // rows per page
  int64_t row_dim = 0;          // kv_lora_rank + rope_dim
};

struct MlaAttentionArgs {
  const float* q = nullptr;  // [n_tokens, n_heads, kv_lora_rank + rope_dim]: q_lat | q_pe
  float* out = nullptr;      // [n_tokens, n_heads, kv_lora_rank]: o_lat
  int64_t n_tokens = 0;
  int64_t n_heads = 0;
  int64_t kv_lora_rank = 0;
  int64_t rope_dim = 0;
  const int32_t* positions = nullptr;                  // [n_tokens]
  const int32_t* const* token_block_tables = nullptr;  // [n_tokens]: its sequence's pages
  LatentCacheLayerView cache;
  float softmax_scale = 1.0f;
};

void MlaAttention(const CpuContext& ctx, const MlaAttentionArgs& args);

}  // namespace dsv2
