#include "coordinator/model/latent_kv_cache.h"

#include <numeric>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu_context.h"

namespace dsv2 {
namespace {

TEST(LatentKvCacheTest, PagesComeAndGo) {
  absl::StatusOr<LatentKvCache> made =
      LatentKvCache::Create({.num_layers = 2, .row_dim = 3, .page_size = 4, .num_pages = 3});
  ASSERT_TRUE(made.ok()) << made.status();
  LatentKvCache& cache = *made;
  const int64_t a = cache.AddSequence(), b = cache.AddSequence();
  ASSERT_TRUE(cache.Reserve(a, 5).ok());  // 2 pages
  EXPECT_EQ(cache.free_pages(), 1);
  EXPECT_EQ(cache.Capacity(a), 8);
  EXPECT_EQ(cache.Reserve(b, 9).code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(cache.free_pages(), 1);  // a refused reservation takes nothing
  ASSERT_TRUE(cache.Reserve(b, 4).ok());
  // Rows of different sequences and layers never alias.
  cache.Row(0, a, 4)[0] = 1.0f;
  cache.Row(1, a, 4)[0] = 2.0f;
  cache.Row(0, b, 0)[0] = 3.0f;
  EXPECT_EQ(cache.Row(0, a, 4)[0], 1.0f);
  EXPECT_EQ(cache.Row(1, a, 4)[0], 2.0f);
  cache.FreeSequence(a);
  EXPECT_EQ(cache.free_pages(), 2);
  EXPECT_FALSE(cache.HasSequence(a));
  EXPECT_EQ(cache.Row(0, b, 0)[0], 3.0f);
  // Slots are page · page_size + offset, the row index the cache write and attention use.
  EXPECT_EQ(cache.Slot(b, 3), cache.BlockTable(b)[0] * 4 + 3);
}

std::vector<int32_t> Iota(int n, int first) {
  std::vector<int32_t> v(n);
  std::iota(v.begin(), v.end(), first);
  return v;
}

// Pages of 4 rows; every row's first value says which token it was computed for.
class PrefixCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<LatentKvCache> made =
        LatentKvCache::Create({.num_layers = 2, .row_dim = 3, .page_size = 4, .num_pages = 6});
    ASSERT_TRUE(made.ok()) << made.status();
    cache_.emplace(*std::move(made));
  }
  // A sequence that computes all of `tokens` (its rows marked) and caches its full pages.
  int64_t Compute(const std::vector<int32_t>& tokens, const std::string& salt = "") {
    const int64_t seq = cache_->AddSequence(salt);
    const int64_t hit = cache_->MatchPrefix(ctx_, seq, tokens);
    EXPECT_TRUE(cache_->Reserve(seq, static_cast<int64_t>(tokens.size())).ok());
    EXPECT_TRUE(cache_->PrepareWrite(ctx_, seq, hit, tokens.size()).ok());
    for (size_t pos = hit; pos < tokens.size(); ++pos) {
      for (int layer = 0; layer < 2; ++layer) cache_->Row(layer, seq, pos)[0] = tokens[pos];
    }
    cache_->CachePages(seq, tokens, tokens.size());
    return seq;
  }
  std::optional<LatentKvCache> cache_;
  CpuContext ctx_{1};
};

TEST_F(PrefixCacheTest, ASecondPromptMapsTheFirstOnesFullPages) {
  const std::vector<int32_t> first = Iota(10, 100);  // 2 full pages + 2 rows
  const int64_t a = Compute(first);
  cache_->FreeSequence(a);
  EXPECT_EQ(cache_->cached_pages(), 2);  // the partial page is free again
  EXPECT_EQ(cache_->free_pages(), 6);    // cached pages count as available
  std::vector<int32_t> second = Iota(9, 100);
  second[8] = 7;  // the same 8 tokens, then another
  const int64_t b = cache_->AddSequence();
  EXPECT_EQ(cache_->MatchPrefix(ctx_, b, second), 8);
  EXPECT_EQ(cache_->cached_pages(), 0);  // held again
  EXPECT_EQ(cache_->Row(1, b, 7)[0], 107.0f);
  // A different token in the second page: the first page matches, and the second's first row
  // (token 104) comes with a copy of that page.
  second[5] = 1;
  const int64_t c = cache_->AddSequence();
  EXPECT_EQ(cache_->MatchPrefix(ctx_, c, second), 5);
  EXPECT_NE(cache_->BlockTable(c)[1], cache_->BlockTable(b)[1]);
  EXPECT_EQ(cache_->Row(0, c, 4)[0], 104.0f);
  EXPECT_TRUE(cache_->Audit().ok()) << cache_->Audit();
  cache_->FreeSequence(b);
  cache_->FreeSequence(c);
  EXPECT_EQ(cache_->free_pages(), 6);
  EXPECT_TRUE(cache_->Audit().ok()) << cache_->Audit();
}

TEST_F(PrefixCacheTest, PagesMatchOnlyAfterTheSamePrefixAndSalt) {
  cache_->FreeSequence(Compute(Iota(8, 0)));
  std::vector<int32_t> shifted = Iota(8, 0);
  shifted[0] = 99;  // page 1 has the same tokens but follows another page 0
  const int64_t a = cache_->AddSequence();
  EXPECT_EQ(cache_->MatchPrefix(ctx_, a, shifted), 0);
  const int64_t salted = cache_->AddSequence("tenant-b");
  EXPECT_EQ(cache_->MatchPrefix(ctx_, salted, Iota(8, 0)), 0);
  const int64_t same = cache_->AddSequence();
  EXPECT_EQ(cache_->MatchPrefix(ctx_, same, Iota(8, 0)), 8);
  // A salted chain is found by its own salt only.
  cache_->FreeSequence(Compute(Iota(4, 50), "tenant-b"));
  const int64_t b2 = cache_->AddSequence("tenant-b");
  EXPECT_EQ(cache_->MatchPrefix(ctx_, b2, Iota(4, 50)), 4);
  const int64_t unsalted = cache_->AddSequence();
  EXPECT_EQ(cache_->MatchPrefix(ctx_, unsalted, Iota(4, 50)), 0);
  EXPECT_TRUE(cache_->Audit().ok()) << cache_->Audit();
}

TEST_F(PrefixCacheTest, ASharedPageIsCopiedBeforeItIsWritten) {
  const std::vector<int32_t> tokens = Iota(8, 10);
  const int64_t a = Compute(tokens);  // still held
  const int64_t b = cache_->AddSequence();
  ASSERT_EQ(cache_->MatchPrefix(ctx_, b, tokens), 8);
  EXPECT_EQ(cache_->BlockTable(b), cache_->BlockTable(a));
  // b recomputes its last token (all of its prompt was cached): page 1 is copied first.
  ASSERT_TRUE(cache_->PrepareWrite(ctx_, b, 7, 8).ok());
  EXPECT_EQ(cache_->BlockTable(b)[0], cache_->BlockTable(a)[0]);
  EXPECT_NE(cache_->BlockTable(b)[1], cache_->BlockTable(a)[1]);
  EXPECT_EQ(cache_->Row(0, b, 6)[0], 16.0f);  // the copy holds the rows
  EXPECT_EQ(cache_->Row(1, b, 7)[0], 17.0f);
  cache_->Row(1, b, 7)[0] = -1.0f;
  EXPECT_EQ(cache_->Row(1, a, 7)[0], 17.0f);  // the cached page is untouched
  // An indexed page is copied even when nobody else holds it.
  cache_->FreeSequence(a);
  ASSERT_TRUE(cache_->PrepareWrite(ctx_, b, 0, 1).ok());
  EXPECT_EQ(cache_->Row(0, b, 0)[0], 10.0f);
  EXPECT_EQ(cache_->cached_pages(), 2);
  cache_->CachePages(b, tokens, 8);  // its copies' content is indexed already
  cache_->FreeSequence(b);
  EXPECT_EQ(cache_->cached_pages(), 2);
  EXPECT_EQ(cache_->free_pages(), 6);
  EXPECT_TRUE(cache_->Audit().ok()) << cache_->Audit();
}

TEST_F(PrefixCacheTest, APromptEndingInsideACachedPageGetsACopyOfItsLeadingRows) {
  cache_->FreeSequence(Compute(Iota(8, 0)));
  const int64_t a = cache_->AddSequence();
  EXPECT_EQ(cache_->MatchPrefix(ctx_, a, {0, 1, 2, 3, 4, 5}), 6);
  const int64_t b = cache_->AddSequence();
  EXPECT_EQ(cache_->MatchPrefix(ctx_, b, {0, 1, 2, 3, 4, 5, 99}), 6);
  EXPECT_EQ(cache_->BlockTable(a)[0], cache_->BlockTable(b)[0]);  // the full page is shared
  EXPECT_NE(cache_->BlockTable(a)[1], cache_->BlockTable(b)[1]);  // the partial one copied
  for (const int64_t s : {a, b}) {
    EXPECT_EQ(cache_->Row(1, s, 4)[0], 4.0f);
    EXPECT_EQ(cache_->Row(1, s, 5)[0], 5.0f);
  }
  EXPECT_EQ(cache_->cached_pages(), 1);  // the original of the copies, still cached
  // Computing the copy's last rows with the original's tokens: its content is indexed already.
  ASSERT_TRUE(cache_->Reserve(a, 8).ok());
  ASSERT_TRUE(cache_->PrepareWrite(ctx_, a, 6, 8).ok());
  cache_->CachePages(a, Iota(8, 0), 8);
  for (const int64_t s : {a, b}) cache_->FreeSequence(s);
  EXPECT_EQ(cache_->cached_pages(), 2);
  EXPECT_EQ(cache_->free_pages(), 6);
  EXPECT_TRUE(cache_->Audit().ok()) << cache_->Audit();
}

TEST_F(PrefixCacheTest, AFinishedSequencesLastRowsStayCachedAsATailPage) {
  // 6 computed rows: a full page, and 2 rows of the next, kept as a tail page.
  const std::vector<int32_t> tokens = Iota(6, 30);
  const int64_t a = cache_->AddSequence();
  ASSERT_TRUE(cache_->Reserve(a, 8).ok());
  for (int pos = 0; pos < 6; ++pos) cache_->Row(0, a, pos)[0] = tokens[pos];
  cache_->CacheAndFreeSequence(a, tokens, 6);
  EXPECT_EQ(cache_->cached_pages(), 2);
  // The next turn resends the 6 tokens and more: 4 rows mapped, 2 from a copy of the tail.
  std::vector<int32_t> next = tokens;
  next.push_back(77);
  const int64_t b = cache_->AddSequence();
  EXPECT_EQ(cache_->MatchPrefix(ctx_, b, next), 6);
  EXPECT_EQ(cache_->Row(0, b, 5)[0], 35.0f);
  // Its own last page is a copy of the tail with the same rows: not indexed a second time.
  cache_->CacheAndFreeSequence(b, next, 6);
  EXPECT_EQ(cache_->cached_pages(), 2);
  EXPECT_EQ(cache_->free_pages(), 6);
  EXPECT_TRUE(cache_->Audit().ok()) << cache_->Audit();
}

TEST_F(PrefixCacheTest, CachedPagesAreEvictedLeastRecentlyUsedFirst) {
  cache_->FreeSequence(Compute(Iota(8, 0)));   // older: pages p0, p1
  cache_->FreeSequence(Compute(Iota(8, 20)));  // newer
  EXPECT_EQ(cache_->cached_pages(), 4);
  // 3 pages: the 2 free ones, then the least recently released cached page, which is the tail
  // of the older chain (released first).
  const int64_t s = cache_->AddSequence();
  ASSERT_TRUE(cache_->Reserve(s, 12).ok());
  EXPECT_EQ(cache_->cached_pages(), 3);
  const int64_t older = cache_->AddSequence();
  EXPECT_EQ(cache_->MatchPrefix(ctx_, older, Iota(8, 0)), 4);  // its head is still cached
  const int64_t newer = cache_->AddSequence();
  EXPECT_EQ(cache_->MatchPrefix(ctx_, newer, Iota(8, 20)), 8);
  EXPECT_EQ(cache_->Reserve(s, 20).code(), absl::StatusCode::kResourceExhausted);  // all held
  EXPECT_TRUE(cache_->Audit().ok()) << cache_->Audit();
  for (const int64_t q : {s, older, newer}) cache_->FreeSequence(q);
  EXPECT_EQ(cache_->free_pages(), 6);
  EXPECT_TRUE(cache_->Audit().ok()) << cache_->Audit();
}

TEST(PagePoolTest, AuditCountsReferencesAndADuplicateStaysUnindexed) {
  PagePool pool(3, 2);
  const int32_t a = *pool.Allocate();
  EXPECT_TRUE(pool.Audit(1).ok());
  EXPECT_FALSE(pool.Audit(2).ok());  // a reference the tables do not hold
  const std::vector<int32_t> tokens = {5, 6};
  const PageSerial serial = pool.Register(a, 0, "", tokens);
  EXPECT_NE(serial, 0u);
  EXPECT_EQ(serial, pool.serial(a));
  const int32_t b = *pool.Allocate();
  EXPECT_EQ(pool.Register(b, 0, "", tokens), serial);  // same content: a stays indexed
  EXPECT_FALSE(pool.indexed(b));
  pool.Release(a);
  pool.Release(b);
  EXPECT_EQ(pool.num_cached(), 1);
  EXPECT_EQ(pool.num_free(), 2);
  EXPECT_TRUE(pool.Audit(0).ok()) << pool.Audit(0);
}

}  // namespace
}  // namespace dsv2
