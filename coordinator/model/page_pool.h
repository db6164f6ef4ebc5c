// PagePool: the host bookkeeping of the latent cache's pages, and the prefix index that lets a
// prompt reuse the pages an earlier one computed (automatic prefix caching).
//
// Every page is in exactly one of three states:
//   held       refs > 0: in the block table of `refs` sequences;
//   cached     refs == 0, in the prefix index: holds rows some request computed, kept for reuse
//              and evicted least-recently-released first when a page is needed;
//   free       refs == 0, not in the index.
// A page enters the index when full and computed; its content is then identified by its
// tokens and by the page before it (its parent), so a match means the same tokens at the same
// positions after the same prefix. The last, partly computed page of a finished sequence enters
// it too, as a tail page that only partial matches (FindPartial) can map. The index is hashed, but
// every match is verified: the page's own tokens, and its parent by serial number (serials are
// never reused, so a page whose parent was evicted can no longer be reached). The first page of a
// chain carries the request's cache salt instead of a parent: chains of different salts never meet.
#pragma once

#include <cstdint>
#include <list>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"

namespace dsv2 {

// The content a page holds, as far as the chain has been verified: 0 = before the first page.
using PageSerial = uint64_t;

class PagePool {
 public:
  PagePool(int64_t num_pages, int64_t page_size);

  // A page to write into (refs = 1): a free one, else the least recently released cached page,
  // which leaves the index. nullopt when every page is held.
  std::optional<int32_t> Allocate();
  void Retain(int32_t page);
  // refs - 1; at zero the page becomes cached (if indexed) or free.
  void Release(int32_t page);

  // The indexed page holding `tokens` (page_size of them) right after `parent` (0: at the
  // start of a chain salted with `salt`), and its serial. The page is not retained.
  struct Match {
    int32_t page;
    PageSerial serial;
  };
  std::optional<Match> Find(PageSerial parent, const std::string& salt,
                            absl::Span<const int32_t> tokens) const;
  // Of the indexed pages right after `parent` (salted like Find's), the one whose tokens start
  // with the longest run of `tokens` (fewer than a page: the rest of a prompt, or a page that
  // differs somewhere), and that run's length (at least 1). Looks at kMaxPartialCandidates pages
  // at most. The page is not retained.
  struct PartialMatch {
    int32_t page;
    int64_t tokens;
  };
  static constexpr int kMaxPartialCandidates = 64;
  std::optional<PartialMatch> FindPartial(PageSerial parent, const std::string& salt,
                                          absl::Span<const int32_t> tokens) const;
  // Indexes `page` (held, full, computed) as holding `tokens` after `parent`, and returns the
  // serial of that content: the page's own, or that of a page already indexed with the same
  // content (computed at the same time by another request; that one stays indexed and `page`
  // stays an ordinary page, free once released).
  PageSerial Register(int32_t page, PageSerial parent, const std::string& salt,
                      absl::Span<const int32_t> tokens);
  // Indexes `page` (held, not indexed) as a tail page whose first tokens.size() (< page_size)
  // rows hold `tokens` after `parent`, unless an indexed page already starts with them all.
  void RegisterTail(int32_t page, PageSerial parent, const std::string& salt,
                    absl::Span<const int32_t> tokens);

  int32_t refs(int32_t page) const { return pages_[page].refs; }
  bool indexed(int32_t page) const { return pages_[page].serial != 0; }
  PageSerial serial(int32_t page) const { return pages_[page].serial; }
  // Pages an allocation can get: free + cached.
  int64_t available() const { return static_cast<int64_t>(free_.size() + lru_.size()); }
  int64_t num_free() const { return static_cast<int64_t>(free_.size()); }
  int64_t num_cached() const { return static_cast<int64_t>(lru_.size()); }
  int64_t num_indexed() const { return static_cast<int64_t>(children_.size()); }  // with tails
  int64_t num_pages() const { return static_cast<int64_t>(pages_.size()); }

  // Every page in exactly one state, the lists and the index consistent with the pages, the
  // references `held_refs` (the block tables' entries) account for.
  absl::Status Audit(int64_t held_refs) const;

 private:
  struct Page {
    int32_t refs = 0;
    PageSerial serial = 0;  // 0: not indexed
    PageSerial parent = 0;
    uint64_t key = 0;
    std::string salt;             // first page of a chain only
    std::vector<int32_t> tokens;  // the content, to verify matches
    std::list<int32_t>::iterator lru_pos;
    bool in_lru = false;
  };
  static uint64_t Key(PageSerial parent, const std::string& salt, absl::Span<const int32_t> tokens);
  static uint64_t ParentKey(PageSerial parent, const std::string& salt);
  void Evict(int32_t page);

  int64_t page_size_;
  std::vector<Page> pages_;
  std::vector<int32_t> free_;
  std::list<int32_t> lru_;                            // cached pages, least recently released first
  std::unordered_multimap<uint64_t, int32_t> index_;  // Key → full page
  std::unordered_multimap<uint64_t, int32_t> children_;  // ParentKey → page (full or tail)
  PageSerial next_serial_ = 1;
};

}  // namespace dsv2
