// LatentKvCache: the MLA cache of every layer, in fixed-size pages. Per token and layer it holds
// kv_lora_rank + qk_rope_head_dim values (the normalized latent c and the roped shared key k_pe)
// in the run's activation dtype: float32 on the CPU, bfloat16 (or float32) in one pool of GPU
// memory. Each sequence owns a block table: row `pos` of a sequence lives in page
// block_table[pos / page_size], slot pos % page_size. Page bookkeeping is on the host
// (PagePool): pages are reference-counted, and full computed pages may be kept after their
// sequence is gone so that a later prompt with the same prefix maps them instead of computing
// them again (MatchPrefix / CachePages); a page two sequences share, or one kept for reuse, is
// never written: PrepareWrite copies it first.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "coordinator/model/page_pool.h"
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

  // `salt` keeps the sequence's pages apart from those of other salts (prefix caching).
  int64_t AddSequence(std::string salt = "");
  // Ensures rows [0, num_tokens) of `seq` have pages; RESOURCE_EXHAUSTED when the pool is empty
  // (the sequence keeps what it had). Cached pages are evicted, least recently used first,
  // when no page is free.
  absl::Status Reserve(int64_t seq, int64_t num_tokens);
  // Releases the sequence's pages: those in the prefix index stay cached, the others are free.
  void FreeSequence(int64_t seq);

  // Prefix caching. Maps the longest cached run of full pages that starts `tokens` into the
  // block table of `seq` (which must have none yet), then, where a cached page after them starts
  // with the next tokens, a copy of it (its rows beyond those are written before they are read);
  // returns the rows of `tokens` the mapped pages hold.
  int64_t MatchPrefix(const ExecContext& ctx, int64_t seq, absl::Span<const int32_t> tokens);
  // Indexes the pages of `seq` that are full and computed (rows [0, num_computed) of `tokens`).
  void CachePages(int64_t seq, absl::Span<const int32_t> tokens, int64_t num_computed);
  // FreeSequence, after indexing what is computed: the full pages, and the rows of the last
  // page as a tail page (a later prompt that ends, or turns away, inside it maps a copy).
  void CacheAndFreeSequence(int64_t seq, absl::Span<const int32_t> tokens, int64_t num_computed);
  // Makes rows [begin, end) of `seq` writable: a page it shares with another sequence or that is
  // in the prefix index is first copied into a page of its own (copy on write).
  // RESOURCE_EXHAUSTED when no page is left for the copy.
  absl::Status PrepareWrite(const ExecContext& ctx, int64_t seq, int64_t begin, int64_t end);
  // OK when every page is held, cached or free, exactly one of them, and the references match
  // the block tables (tests).
  absl::Status Audit() const { return pool_.Audit(HeldReferences()); }
  bool HasSequence(int64_t seq) const { return sequences_.count(seq) != 0; }

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
  // Pages a reservation can take: free ones and cached ones (evicted when taken).
  int64_t free_pages() const { return pool_.available(); }
  int64_t cached_pages() const { return pool_.num_cached(); }
  int64_t bytes() const { return storage_.bytes(); }
  Device device() const { return options_.device; }
  DType dtype() const { return options_.dtype; }

 private:
  struct SequencePages {
    std::vector<int32_t> table;
    std::string salt;
    int64_t chained = 0;         // leading pages whose content the prefix chain knows
    PageSerial last_serial = 0;  // that of page chained - 1
  };
  explicit LatentKvCache(const LatentKvCacheOptions& options)
      : options_(options), pool_(options.num_pages, options.page_size) {}
  int64_t page_stride() const { return options_.page_size * options_.row_dim; }
  int64_t pages_per_layer() const { return options_.num_pages + 1; }  // + the scratch page
  SequencePages& Pages(int64_t seq);
  absl::Status CopyPage(const ExecContext& ctx, int32_t from, int32_t to);
  int64_t HeldReferences() const;

  LatentKvCacheOptions options_;
  // [num_layers, num_pages + 1, page_size, row_dim]. Not zeroed: a row is always written before it
  // is read (a sequence attends only to its own positions up to the current one), so pages are
  // touched only when used instead of all at start-up (4 GB for V2-Lite's default cache).
  DeviceBuffer storage_;
  PagePool pool_;
  std::unordered_map<int64_t, SequencePages> sequences_;
  int64_t next_seq_ = 0;
};

}  // namespace dsv2
