// One forward call's input: several sequences' tokens in one flat array (continuous batching).
#pragma once

#include <cstdint>
#include <vector>

namespace dsv2 {

struct SequenceChunk {
  int64_t seq_id = 0;       // the sequence's id in the LatentKvCache
  int64_t start_pos = 0;    // position of its first token here; rows before it are cached
  int64_t num_tokens = 0;   // its tokens in ForwardBatch::tokens, after the previous chunks'
  bool all_logits = false;  // logits for every token (scoring), or only for the last one
};

struct ForwardBatch {
  std::vector<int32_t> tokens;  // [Σ num_tokens]
  std::vector<SequenceChunk> chunks;

  // Appends one chunk and its tokens.
  void Add(int64_t seq_id, int64_t start_pos, const std::vector<int32_t>& chunk_tokens,
           bool all_logits = false) {
    chunks.push_back({seq_id, start_pos, static_cast<int64_t>(chunk_tokens.size()), all_logits});
    tokens.insert(tokens.end(), chunk_tokens.begin(), chunk_tokens.end());
  }
};

// Per-token indexing derived from a batch, shared by the layers of one forward call.
struct TokenLayout {
  int64_t n_tokens = 0;
  std::vector<int32_t> positions;            // [n_tokens]
  std::vector<int64_t> seq_ids;              // [n_tokens]
  std::vector<const int32_t*> block_tables;  // [n_tokens]: its sequence's pages
};

}  // namespace dsv2
