// MLA attention of a prefill chunk in the expanded form (REFERENCE.md §3, as the reference
// computes it): keys k_h = [W_UK,h · c | k_pe] (nope + rope values) and values v_h = W_UV,h · c
// are made from the chunk's sequence's latent rows once, and each head's attention runs as
// GEMMs: S = Q_h · K_hᵀ (float32), a causal softmax, O_h = P · V_h. Per (query, key) pair and
// head that is nope + rope + v multiply-adds against the absorbed form's 2·kv_lora_rank + rope
// (V2-Lite: 320 against 1,088), for an expansion of heads·(nope + v)·kv_lora_rank per cached
// row. Decode tokens (and short chunks) stay absorbed: ExpandedSegments picks by that cost.
// CPU only: on a GPU every token runs the absorbed kernel.
#pragma once

#include <cstdint>
#include <vector>

#include "coordinator/model/forward_batch.h"
#include "coordinator/model/mla_attention_block.h"
#include "coordinator/model/model_weights.h"
#include "kernels/mla_attention.h"

namespace dsv2 {

// Consecutive tokens of one sequence at consecutive positions.
struct ExpandedSegment {
  int64_t first_token = 0;  // row of the step's token arrays
  int64_t n_tokens = 0;
  int32_t first_position = 0;  // the chunk's queries are at first_position .. + n_tokens - 1
  int32_t table = 0;           // row of block_tables
};

// The step's chunks for which the expanded form costs fewer multiply-adds than the absorbed
// one: a chunk of n queries after P cached rows makes L = P + n rows of keys and values
// (L · heads · (nope + v) · r) and saves heads · (2r − nope − v) on each of its
// n · (P + (n + 1) / 2) pairs. At least 32 queries (below that the GEMMs run as dot products).
std::vector<ExpandedSegment> ExpandedSegments(const ModelConfig& config, const TokenLayout& layout);

// The attention of one segment: q [n, heads, qk] holds [q_nope | rope(q_pe)] per head (rows
// q_stride apart, the segment's first token first); o [n, heads, v] is written (rows o_stride
// apart). The segment's own rows are in the cache already.
struct ExpandedAttentionArgs {
  const ExpandedSegment& segment;
  const AttentionWeights& w;
  const LatentCacheLayerView& cache;
  const TokenLayout& layout;
  const void* q = nullptr;
  int64_t q_stride = 0;
  void* o = nullptr;
  int64_t o_stride = 0;
};
void ExpandedAttention(const AttentionEnv& env, const ExpandedAttentionArgs& args);

}  // namespace dsv2
