// One forward call's input: several sequences' tokens in one flat array (continuous batching).
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/logits_summary.h"

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

// Which output rows a forward call returns in full and which only as a LogitsSummaryRow (a
// greedy step without penalties needs no more; on a GPU the full row is 400 KB of the host link).
struct LogitsRequest {
  std::vector<uint8_t> summarize;  // [n_out] 1: a summary; empty: every row in full
  int32_t top_n = 0;               // top tokens each summary carries (<= kMaxSummaryTop)
};

struct LogitsResult {
  std::vector<float> full;                  // [rows in full, vocab], in row order
  std::vector<LogitsSummaryRow> summaries;  // [summarised rows], in row order
};

// Per-token indexing derived from a batch, shared by the layers of one forward call. Built on
// the host; `tables` points at the same data on the context's device (the host vectors
// themselves on the CPU, a copy in the workspace on a GPU).
struct StepTables {
  const int32_t* tokens = nullptr;        // [n_tokens]
  const int32_t* positions = nullptr;     // [n_tokens]
  const int32_t* token_table = nullptr;   // [n_tokens]: the token's row of block_tables
  const int64_t* slots = nullptr;         // [n_tokens]: flat cache row of (sequence, position)
  const int32_t* block_tables = nullptr;  // [n_chunks, max_pages]
  const int32_t* out_rows = nullptr;      // [n_out]: rows whose logits were asked for
};

struct TokenLayout {
  int64_t n_tokens = 0;
  int64_t n_out = 0;
  int64_t max_pages = 0;     // pages of the longest sequence: block_tables' row stride
  int32_t max_position = 0;  // over the batch
  std::vector<int32_t> tokens, positions, token_table, block_tables, out_rows;
  std::vector<int64_t> slots;
  StepTables tables;
};

}  // namespace dsv2
