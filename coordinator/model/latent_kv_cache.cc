#include "coordinator/model/latent_kv_cache.h"

#include "absl/strings/str_cat.h"
#include "kernels/check.h"

namespace dsv2 {

absl::StatusOr<LatentKvCache> LatentKvCache::Create(const LatentKvCacheOptions& options) {
  DSV2_CHECK(options.num_layers > 0 && options.row_dim > 0 && options.page_size > 0 &&
             options.num_pages >= 0);
  LatentKvCache c(options);
  const int64_t bytes =
      options.num_layers * c.pages_per_layer() * c.page_stride() * DTypeSize(options.dtype);
  absl::StatusOr<DeviceBuffer> storage = DeviceBuffer::Allocate(options.device, bytes);
  if (!storage.ok()) {
    return absl::ResourceExhaustedError(absl::StrCat("latent KV cache of ", options.num_pages,
                                                     " pages (", bytes,
                                                     " bytes): ", storage.status().message()));
  }
  c.storage_ = *std::move(storage);
  c.free_.reserve(options.num_pages);
  for (int64_t p = options.num_pages - 1; p >= 0; --p) c.free_.push_back(static_cast<int32_t>(p));
  return c;
}

int64_t LatentKvCache::AddSequence() {
  const int64_t id = next_seq_++;
  block_tables_[id];
  return id;
}

absl::Status LatentKvCache::Reserve(int64_t seq, int64_t num_tokens) {
  auto it = block_tables_.find(seq);
  DSV2_CHECK(it != block_tables_.end());
  std::vector<int32_t>& table = it->second;
  const int64_t need = (num_tokens + options_.page_size - 1) / options_.page_size;
  const int64_t more = need - static_cast<int64_t>(table.size());
  if (more <= 0) return absl::OkStatus();
  if (more > free_pages()) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "latent KV cache: ", num_tokens, " tokens need ", more, " more pages of ",
        options_.page_size, " rows, only ", free_pages(), " of ", options_.num_pages, " are free"));
  }
  for (int64_t i = 0; i < more; ++i) {
    table.push_back(free_.back());
    free_.pop_back();
  }
  return absl::OkStatus();
}

void LatentKvCache::FreeSequence(int64_t seq) {
  auto it = block_tables_.find(seq);
  if (it == block_tables_.end()) return;
  for (auto p = it->second.rbegin(); p != it->second.rend(); ++p) free_.push_back(*p);
  block_tables_.erase(it);
}

const std::vector<int32_t>& LatentKvCache::BlockTable(int64_t seq) const {
  auto it = block_tables_.find(seq);
  DSV2_CHECK(it != block_tables_.end());
  return it->second;
}

int64_t LatentKvCache::Capacity(int64_t seq) const {
  return static_cast<int64_t>(BlockTable(seq).size()) * options_.page_size;
}

int64_t LatentKvCache::Slot(int64_t seq, int64_t pos) const {
  const std::vector<int32_t>& table = BlockTable(seq);
  DSV2_CHECK(pos >= 0 && pos / options_.page_size < static_cast<int64_t>(table.size()));
  return static_cast<int64_t>(table[pos / options_.page_size]) * options_.page_size +
         pos % options_.page_size;
}

float* LatentKvCache::Row(int64_t layer, int64_t seq, int64_t pos) {
  DSV2_CHECK(options_.device == Device::kCpu && options_.dtype == DType::kF32);
  return storage_.as<float>() + layer * pages_per_layer() * page_stride() +
         Slot(seq, pos) * options_.row_dim;
}

LatentCacheLayerView LatentKvCache::LayerView(int64_t layer) const {
  LatentCacheLayerView v;
  v.base = storage_.as<uint8_t>() +
           layer * pages_per_layer() * page_stride() * DTypeSize(options_.dtype);
  v.dtype = options_.dtype;
  v.page_stride = page_stride();
  v.page_size = options_.page_size;
  v.row_dim = options_.row_dim;
  return v;
}

}  // namespace dsv2
