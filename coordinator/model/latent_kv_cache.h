// LatentKvCache: the MLA cache of every layer, in fixed-size pages. Per token and layer it holds
// kv_lora_rank + qk_rope_head_dim values (the normalized latent c and the roped shared key k_pe)
// in the run's activation dtype: float32 on the CPU, bfloat16 (or float32) in one pool of GPU
// memory. Each sequence owns a block table: row `pos` of a sequence lives in page
// block_table[pos / page_size], slot pos % page_size. Page bookkeeping is on the host.
#pragma once

#include <cstdint>
#include <memory>
#include <unordered_map>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/device_buffer.h"
#include "kernels/mla_attention.h"

namespace dsv2 {

struct LatentKvCacheOptions {
  int64_t num_layers = 0;
  int64_t row_dim = 0;  // kv_lora_rank + qk_rope_head_dim
  int64_t page_size = 64;
  int64_t num_pages = 0;
  Device device = Device::kCpu;
  DType dtype = DType::kF32;
};

class LatentKvCache {
 public:
  // RESOURCE_EXHAUSTED when the pool cannot be allocated.
  static absl::StatusOr<LatentKvCache> Create(const LatentKvCacheOptions& options);

  int64_t AddSequence();
  // Ensures rows [0, num_tokens) of `seq` have pages; RESOURCE_EXHAUSTED when the pool is empty
  // (the sequence keeps what it had).
  absl::Status Reserve(int64_t seq, int64_t num_tokens);
  void FreeSequence(int64_t seq);
  bool HasSequence(int64_t seq) const { return block_tables_.count(seq) != 0; }

  const std::vector<int32_t>& BlockTable(int64_t seq) const;
  int64_t Capacity(int64_t seq) const;  // rows the sequence's pages hold
  // The flat row index of (seq, pos) in a layer's pool: page · page_size + offset.
  int64_t Slot(int64_t seq, int64_t pos) const;
  float* Row(int64_t layer, int64_t seq, int64_t pos);  // CPU float32 caches only (tests)
  LatentCacheLayerView LayerView(int64_t layer) const;

  // One page beyond the pool, never handed out: rows of padding tokens (a CUDA graph bucket
  // larger than the batch) are written there and read back by those tokens alone.
  int32_t scratch_page() const { return static_cast<int32_t>(options_.num_pages); }

  int64_t page_size() const { return options_.page_size; }
  int64_t num_pages() const { return options_.num_pages; }
  int64_t free_pages() const { return static_cast<int64_t>(free_.size()); }
  int64_t bytes() const { return storage_.bytes(); }
  Device device() const { return options_.device; }
  DType dtype() const { return options_.dtype; }

 private:
  explicit LatentKvCache(const LatentKvCacheOptions& options) : options_(options) {}
  int64_t page_stride() const { return options_.page_size * options_.row_dim; }
  int64_t pages_per_layer() const { return options_.num_pages + 1; }  // + the scratch page

  LatentKvCacheOptions options_;
  // [num_layers, num_pages + 1, page_size, row_dim]. Not zeroed: a row is always written before it
  // is read (a sequence attends only to its own positions up to the current one), so pages are
  // touched only when used instead of all at start-up (4 GB for V2-Lite's default cache).
  DeviceBuffer storage_;
  std::vector<int32_t> free_;
  std::unordered_map<int64_t, std::vector<int32_t>> block_tables_;
  int64_t next_seq_ = 0;
};

}  // namespace dsv2
