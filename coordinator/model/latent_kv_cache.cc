#include "coordinator/model/latent_kv_cache.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "kernels/check.h"
#include "kernels/cuda/cuda_context.h"

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
  return c;
}

int64_t LatentKvCache::AddSequence(std::string salt) {
  const int64_t id = next_seq_++;
  sequences_[id].salt = std::move(salt);
  return id;
}

LatentKvCache::SequencePages& LatentKvCache::Pages(int64_t seq) {
  auto it = sequences_.find(seq);
  DSV2_CHECK(it != sequences_.end());
  return it->second;
}

absl::Status LatentKvCache::Reserve(int64_t seq, int64_t num_tokens) {
  std::vector<int32_t>& table = Pages(seq).table;
  const int64_t need = (num_tokens + options_.page_size - 1) / options_.page_size;
  const int64_t more = need - static_cast<int64_t>(table.size());
  if (more <= 0) return absl::OkStatus();
  if (more > free_pages()) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "latent KV cache: ", num_tokens, " tokens need ", more, " more pages of ",
        options_.page_size, " rows, only ", free_pages(), " of ", options_.num_pages, " are free"));
  }
  for (int64_t i = 0; i < more; ++i) table.push_back(*pool_.Allocate());
  return absl::OkStatus();
}

void LatentKvCache::FreeSequence(int64_t seq) {
  auto it = sequences_.find(seq);
  if (it == sequences_.end()) return;
  // The tail first: of a released chain, its last pages are the first to be evicted.
  const std::vector<int32_t>& table = it->second.table;
  for (auto p = table.rbegin(); p != table.rend(); ++p) pool_.Release(*p);
  sequences_.erase(it);
}

int64_t LatentKvCache::MatchPrefix(const ExecContext& ctx, int64_t seq,
                                   absl::Span<const int32_t> tokens) {
  SequencePages& s = Pages(seq);
  DSV2_CHECK(s.table.empty());
  const int64_t ps = options_.page_size;
  const int64_t n = static_cast<int64_t>(tokens.size());
  while ((s.chained + 1) * ps <= n) {
    std::optional<PagePool::Match> m =
        pool_.Find(s.last_serial, s.salt, tokens.subspan(s.chained * ps, ps));
    if (!m) break;
    pool_.Retain(m->page);
    s.table.push_back(m->page);
    s.last_serial = m->serial;
    ++s.chained;
  }
  const int64_t full = s.chained * ps;
  if (full == n) return full;
  // The next page in part: a copy of the cached page that shares the most leading tokens.
  const std::optional<PagePool::PartialMatch> part =
      pool_.FindPartial(s.last_serial, s.salt, tokens.subspan(full, std::min(ps, n - full)));
  if (!part) return full;
  pool_.Retain(part->page);  // not evicted by the allocation below
  const std::optional<int32_t> copy = pool_.Allocate();
  const bool copied = copy && CopyPage(ctx, part->page, *copy).ok();
  pool_.Release(part->page);
  if (!copied) {
    if (copy) pool_.Release(*copy);
    return full;
  }
  s.table.push_back(*copy);
  return full + part->tokens;
}

void LatentKvCache::CachePages(int64_t seq, absl::Span<const int32_t> tokens,
                               int64_t num_computed) {
  SequencePages& s = Pages(seq);
  const int64_t ps = options_.page_size;
  DSV2_CHECK(num_computed <= static_cast<int64_t>(tokens.size()));
  while ((s.chained + 1) * ps <= num_computed) {
    const int32_t page = s.table[s.chained];
    const absl::Span<const int32_t> content = tokens.subspan(s.chained * ps, ps);
    // A page mapped from the index is known; Register finds the original of a copy.
    s.last_serial = pool_.indexed(page) ? pool_.serial(page)
                                        : pool_.Register(page, s.last_serial, s.salt, content);
    ++s.chained;
  }
}

void LatentKvCache::CacheAndFreeSequence(int64_t seq, absl::Span<const int32_t> tokens,
                                         int64_t num_computed) {
  CachePages(seq, tokens, num_computed);
  const SequencePages& s = Pages(seq);
  const int64_t begin = s.chained * options_.page_size;
  if (num_computed > begin && s.chained < static_cast<int64_t>(s.table.size())) {
    const int32_t tail = s.table[s.chained];
    if (pool_.refs(tail) == 1 && !pool_.indexed(tail)) {
      pool_.RegisterTail(tail, s.last_serial, s.salt, tokens.subspan(begin, num_computed - begin));
    }
  }
  FreeSequence(seq);
}

absl::Status LatentKvCache::PrepareWrite(const ExecContext& ctx, int64_t seq, int64_t begin,
                                         int64_t end) {
  std::vector<int32_t>& table = Pages(seq).table;
  const int64_t ps = options_.page_size;
  for (int64_t i = begin / ps; i < static_cast<int64_t>(table.size()) && i * ps < end; ++i) {
    const int32_t page = table[i];
    if (pool_.refs(page) == 1 && !pool_.indexed(page)) continue;
    std::optional<int32_t> copy = pool_.Allocate();
    if (!copy) {
      return absl::ResourceExhaustedError(
          "latent KV cache: no page left to copy a shared page into before writing it");
    }
    DSV2_RETURN_IF_ERROR(CopyPage(ctx, page, *copy));
    pool_.Release(page);
    table[i] = *copy;
  }
  return absl::OkStatus();
}

absl::Status LatentKvCache::CopyPage(const ExecContext& ctx, int32_t from, int32_t to) {
  const int64_t bytes = page_stride() * DTypeSize(options_.dtype);
  for (int64_t layer = 0; layer < options_.num_layers; ++layer) {
    uint8_t* base = static_cast<uint8_t*>(LayerView(layer).base);
    if (ctx.on_cuda()) {
      DSV2_RETURN_IF_ERROR(ctx.cuda().CopyOnDevice(base + to * bytes, base + from * bytes, bytes));
    } else {
      std::memcpy(base + to * bytes, base + from * bytes, bytes);
    }
  }
  return absl::OkStatus();
}

int64_t LatentKvCache::HeldReferences() const {
  int64_t refs = 0;
  for (const auto& [id, s] : sequences_) refs += static_cast<int64_t>(s.table.size());
  return refs;
}

const std::vector<int32_t>& LatentKvCache::BlockTable(int64_t seq) const {
  auto it = sequences_.find(seq);
  DSV2_CHECK(it != sequences_.end());
  return it->second.table;
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
