#include "coordinator/model/page_pool.h"

#include <algorithm>
#include <functional>

#include "absl/strings/str_cat.h"
#include "kernels/check.h"

namespace dsv2 {
namespace {

uint64_t Mix(uint64_t x) {  // splitmix64's finaliser
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

}  // namespace

PagePool::PagePool(int64_t num_pages, int64_t page_size)
    : page_size_(page_size), pages_(num_pages) {
  DSV2_CHECK(num_pages >= 0 && page_size > 0);
  free_.reserve(num_pages);
  for (int64_t p = num_pages - 1; p >= 0; --p) free_.push_back(static_cast<int32_t>(p));
}

uint64_t PagePool::ParentKey(PageSerial parent, const std::string& salt) {
  const uint64_t h = Mix(parent + 0x9e3779b97f4a7c15ULL);
  return parent == 0 ? Mix(h ^ std::hash<std::string>()(salt)) : h;
}

uint64_t PagePool::Key(PageSerial parent, const std::string& salt,
                       absl::Span<const int32_t> tokens) {
  uint64_t h = ParentKey(parent, salt);
  for (const int32_t t : tokens) h = Mix(h ^ static_cast<uint32_t>(t));
  return h;
}

namespace {
void EraseEntry(std::unordered_multimap<uint64_t, int32_t>& map, uint64_t key, int32_t page) {
  auto [first, last] = map.equal_range(key);
  for (auto it = first; it != last; ++it) {
    if (it->second == page) {
      map.erase(it);
      return;
    }
  }
}
}  // namespace

std::optional<int32_t> PagePool::Allocate() {
  int32_t page;
  if (!free_.empty()) {
    page = free_.back();
    free_.pop_back();
  } else if (!lru_.empty()) {
    page = lru_.front();
    Evict(page);
  } else {
    return std::nullopt;
  }
  pages_[page].refs = 1;
  return page;
}

void PagePool::Evict(int32_t page) {
  Page& p = pages_[page];
  DSV2_CHECK(p.in_lru && p.refs == 0);
  lru_.erase(p.lru_pos);
  p.in_lru = false;
  EraseEntry(index_, p.key, page);
  EraseEntry(children_, ParentKey(p.parent, p.salt), page);
  p.serial = p.parent = p.key = 0;
  p.salt.clear();
  p.tokens.clear();
}

void PagePool::Retain(int32_t page) {
  Page& p = pages_[page];
  if (p.refs++ == 0) {  // a cached page comes back into use
    DSV2_CHECK(p.in_lru);
    lru_.erase(p.lru_pos);
    p.in_lru = false;
  }
}

void PagePool::Release(int32_t page) {
  Page& p = pages_[page];
  DSV2_CHECK(p.refs > 0);
  if (--p.refs > 0) return;
  if (p.serial != 0) {
    p.lru_pos = lru_.insert(lru_.end(), page);
    p.in_lru = true;
  } else {
    free_.push_back(page);
  }
}

std::optional<PagePool::Match> PagePool::Find(PageSerial parent, const std::string& salt,
                                              absl::Span<const int32_t> tokens) const {
  DSV2_CHECK(static_cast<int64_t>(tokens.size()) == page_size_);
  auto [first, last] = index_.equal_range(Key(parent, salt, tokens));
  for (auto it = first; it != last; ++it) {
    const Page& p = pages_[it->second];
    if (p.parent == parent && (parent != 0 || p.salt == salt) &&
        std::equal(tokens.begin(), tokens.end(), p.tokens.begin(), p.tokens.end())) {
      return Match{it->second, p.serial};
    }
  }
  return std::nullopt;
}

std::optional<PagePool::PartialMatch> PagePool::FindPartial(
    PageSerial parent, const std::string& salt, absl::Span<const int32_t> tokens) const {
  std::optional<PartialMatch> best;
  auto [first, last] = children_.equal_range(ParentKey(parent, salt));
  int looked = 0;
  for (auto it = first; it != last && looked < kMaxPartialCandidates; ++it, ++looked) {
    const Page& p = pages_[it->second];
    if (p.parent != parent || (parent == 0 && p.salt != salt)) continue;
    const int64_t n = std::min<int64_t>(tokens.size(), p.tokens.size());
    int64_t same = 0;
    while (same < n && p.tokens[same] == tokens[same]) ++same;
    if (same > 0 && (!best || same > best->tokens)) best = PartialMatch{it->second, same};
  }
  return best;
}

void PagePool::RegisterTail(int32_t page, PageSerial parent, const std::string& salt,
                            absl::Span<const int32_t> tokens) {
  Page& p = pages_[page];
  DSV2_CHECK(p.refs > 0 && p.serial == 0 && !tokens.empty() &&
             static_cast<int64_t>(tokens.size()) < page_size_);
  const std::optional<PartialMatch> known = FindPartial(parent, salt, tokens);
  if (known && known->tokens == static_cast<int64_t>(tokens.size())) return;
  p.serial = next_serial_++;
  p.parent = parent;
  if (parent == 0) p.salt = salt;
  p.tokens.assign(tokens.begin(), tokens.end());
  children_.emplace(ParentKey(parent, salt), page);
}

PageSerial PagePool::Register(int32_t page, PageSerial parent, const std::string& salt,
                              absl::Span<const int32_t> tokens) {
  Page& p = pages_[page];
  DSV2_CHECK(p.refs > 0 && p.serial == 0);
  if (std::optional<Match> same = Find(parent, salt, tokens)) return same->serial;
  p.serial = next_serial_++;
  p.parent = parent;
  p.key = Key(parent, salt, tokens);
  if (parent == 0) p.salt = salt;
  p.tokens.assign(tokens.begin(), tokens.end());
  index_.emplace(p.key, page);
  children_.emplace(ParentKey(parent, salt), page);
  return p.serial;
}

absl::Status PagePool::Audit(int64_t held_refs) const {
  std::vector<int> seen(pages_.size(), 0);
  for (const int32_t page : free_) {
    if (pages_[page].refs != 0 || pages_[page].serial != 0 || seen[page]++ != 0) {
      return absl::InternalError(
          absl::StrCat("page ", page, " is free and held, cached or free twice"));
    }
  }
  for (const int32_t page : lru_) {
    if (pages_[page].refs != 0 || pages_[page].serial == 0 || !pages_[page].in_lru ||
        seen[page]++ != 0) {
      return absl::InternalError(
          absl::StrCat("page ", page, " is cached and held, free or unindexed"));
    }
  }
  int64_t refs = 0, indexed = 0, full = 0;
  for (size_t page = 0; page < pages_.size(); ++page) {
    const Page& p = pages_[page];
    refs += p.refs;
    if (p.serial != 0) ++indexed;
    if (p.serial != 0 && static_cast<int64_t>(p.tokens.size()) == page_size_) ++full;
    if (p.refs > 0 && (seen[page] != 0 || p.in_lru)) {
      return absl::InternalError(absl::StrCat("page ", page, " is held and free or cached"));
    }
    if (p.refs == 0 && seen[page] == 0) {
      return absl::InternalError(
          absl::StrCat("page ", page, " is lost: neither held, free nor cached"));
    }
  }
  if (indexed != static_cast<int64_t>(children_.size()) ||
      full != static_cast<int64_t>(index_.size())) {
    return absl::InternalError(absl::StrCat(indexed, " pages carry a serial (", full,
                                            " full), the indexes hold ", children_.size(), " (",
                                            index_.size(), " full)"));
  }
  for (const auto& [key, page] : children_) {
    if (ParentKey(pages_[page].parent, pages_[page].salt) != key || pages_[page].serial == 0) {
      return absl::InternalError(absl::StrCat("children index entry of page ", page, " is stale"));
    }
  }
  for (const auto& [key, page] : index_) {
    if (pages_[page].key != key || pages_[page].serial == 0) {
      return absl::InternalError(absl::StrCat("index entry of page ", page, " is stale"));
    }
  }
  if (refs != held_refs) {
    return absl::InternalError(
        absl::StrCat("pages count ", refs, " references, the block tables hold ", held_refs));
  }
  return absl::OkStatus();
}

}  // namespace dsv2
