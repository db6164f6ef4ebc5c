#include "coordinator/model/latent_kv_cache.h"

#include "gtest/gtest.h"

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

}  // namespace
}  // namespace dsv2
