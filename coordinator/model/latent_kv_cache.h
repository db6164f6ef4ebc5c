// LatentKvCache: the MLA cache of every layer, in fixed-size pages. Per token and layer it holds
// kv_lora_rank + qk_rope_head_dim values (the normalized latent c and the roped shared key k_pe),
// float32 on the CPU. Each sequence owns a block table: row `pos` of a sequence lives in page
// block_table[pos / page_size], slot pos % page_size.
#pragma once

#include <cstdint>
#include <memory>
#include <unordered_map>
#include <vector>

#include "absl/status/status.h"
#include "kernels/mla_attention.h"

namespace dsv2 {

struct LatentKvCacheOptions {
  int64_t num_layers = 0;
  int64_t row_dim = 0;  // kv_lora_rank + qk_rope_head_dim
  int64_t page_size = 64;
  int64_t num_pages = 0;
};

class LatentKvCache {
 public:
  explicit LatentKvCache(const LatentKvCacheOptions& options);

  int64_t AddSequence();
  // Ensures rows [0, num_tokens) of `seq` have pages; RESOURCE_EXHAUSTED when the pool is empty
  // (the sequence keeps what it had).
  absl::Status Reserve(int64_t seq, int64_t num_tokens);
  void FreeSequence(int64_t seq);
  bool HasSequence(int64_t seq) const { return block_tables_.count(seq) != 0; }

  const std::vector<int32_t>& BlockTable(int64_t seq) const;
  int64_t Capacity(int64_t seq) const;  // rows the sequence's pages hold
  float* Row(int64_t layer, int64_t seq, int64_t pos);
  LatentCacheLayerView LayerView(int64_t layer) const;

  int64_t page_size() const { return options_.page_size; }
  int64_t num_pages() const { return options_.num_pages; }
  int64_t free_pages() const { return static_cast<int64_t>(free_.size()); }
  int64_t bytes() const { return storage_size_ * static_cast<int64_t>(sizeof(float)); }

 private:
  int64_t page_stride() const { return options_.page_size * options_.row_dim; }

  LatentKvCacheOptions options_;
  // [num_layers, num_pages, page_size, row_dim]. Not zeroed: a row is always written before it
  // is read (a sequence attends only to its own positions up to the current one), so pages are
  // touched only when used instead of all at start-up (4 GB for V2-Lite's default cache).
  std::unique_ptr<float[]> storage_;
  int64_t storage_size_ = 0;
  std::vector<int32_t> free_;
  std::unordered_map<int64_t, std::vector<int32_t>> block_tables_;
  int64_t next_seq_ = 0;
};

}  // namespace dsv2
