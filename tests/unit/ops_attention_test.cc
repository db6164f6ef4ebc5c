// MlaAttention on the CPU against a double-precision reference, for every ISA this processor
// runs (the AVX-512 path reads each cache row once for a group of heads; the others one head at
// a time): paged caches with shuffled pages, decode tokens and prefill chunks of two sequences,
// head counts that leave partial groups, and the shapes of DeepSeek-V2 (512 + 64).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu_context.h"
#include "kernels/mla_attention.h"

namespace dsv2 {
namespace {

struct Case {
  int64_t rank, rope, heads, page_size;
  // > 0: instead, one decode token over a sequence of this many rows (split across threads).
  int64_t decode_rows = 0;
};

void CheckCase(const CpuContext& ctx, const Case& c, std::mt19937& rng) {
  SCOPED_TRACE("rank=" + std::to_string(c.rank) + " rope=" + std::to_string(c.rope) +
               " heads=" + std::to_string(c.heads) + " page_size=" + std::to_string(c.page_size) +
               " isa=" + CpuIsaName(ctx.isa()) + " threads=" + std::to_string(ctx.num_threads()) +
               " act=" + PrecisionName(ctx.act_dtype()));
  const int64_t row_dim = c.rank + c.rope;
  // Two sequences: 37 rows (one decode token at position 36) and 70 rows (a prefill chunk of
  // the last 5 tokens, positions 65..69); or one decode token after decode_rows rows.
  const std::vector<int64_t> lengths =
      c.decode_rows > 0 ? std::vector<int64_t>{c.decode_rows, 1} : std::vector<int64_t>{37, 70};
  const int64_t longest = std::max(lengths[0], lengths[1]);
  const int64_t max_pages = (longest + c.page_size - 1) / c.page_size;
  const int64_t num_pages = 2 * max_pages + 3;
  std::vector<int32_t> page_ids(num_pages);
  std::iota(page_ids.begin(), page_ids.end(), 0);
  std::shuffle(page_ids.begin(), page_ids.end(), rng);
  std::vector<int32_t> block_tables(2 * max_pages, -1);
  for (int64_t s = 0, next = 0; s < 2; ++s) {
    for (int64_t p = 0; p < (lengths[s] + c.page_size - 1) / c.page_size; ++p) {
      block_tables[s * max_pages + p] = page_ids[next++];
    }
  }
  std::uniform_real_distribution<float> uni(-1.0f, 1.0f);
  std::vector<float> cache(num_pages * c.page_size * row_dim);
  for (float& v : cache) v = uni(rng);
  const std::vector<int32_t> positions =
      c.decode_rows > 0 ? std::vector<int32_t>{static_cast<int32_t>(c.decode_rows - 1)}
                        : std::vector<int32_t>{36, 65, 66, 67, 68, 69};
  const std::vector<int32_t> token_table =
      c.decode_rows > 0 ? std::vector<int32_t>{0} : std::vector<int32_t>{0, 1, 1, 1, 1, 1};
  const int64_t n = static_cast<int64_t>(positions.size());
  std::vector<float> q(n * c.heads * row_dim);
  for (float& v : q) v = 2 * uni(rng);
  std::vector<float> out(n * c.heads * c.rank, NAN);
  // bfloat16: the same values rounded to bf16 feed both sides; the output is rounded once.
  const bool bf16 = ctx.act_dtype() == DType::kBF16;
  auto to_bf16 = [](std::vector<float>& v) {
    std::vector<uint16_t> bits(v.size());
    for (size_t i = 0; i < v.size(); ++i) v[i] = Bf16ToFloat(bits[i] = FloatToBf16(v[i]));
    return bits;
  };
  std::vector<uint16_t> cache16, q16, out16(out.size(), 0xffff);
  if (bf16) {
    cache16 = to_bf16(cache);
    q16 = to_bf16(q);
  }

  MlaAttentionArgs a;
  a.q = bf16 ? static_cast<const void*>(q16.data()) : q.data();
  a.out = bf16 ? static_cast<void*>(out16.data()) : out.data();
  a.n_tokens = n;
  a.n_heads = c.heads;
  a.kv_lora_rank = c.rank;
  a.rope_dim = c.rope;
  a.positions = positions.data();
  a.token_table = token_table.data();
  a.block_tables = block_tables.data();
  a.max_pages = max_pages;
  a.max_position = *std::max_element(positions.begin(), positions.end());
  a.cache = {bf16 ? static_cast<void*>(cache16.data()) : cache.data(), ctx.act_dtype(),
             c.page_size * row_dim, c.page_size, row_dim};
  a.softmax_scale = 1.0f / std::sqrt(static_cast<float>(row_dim));
  MlaAttention(ctx, a);
  if (bf16) {
    for (size_t i = 0; i < out.size(); ++i) out[i] = Bf16ToFloat(out16[i]);
  }
  // One rounding of the output to bf16: 2^-8 of the largest value (a wrong row is O(1) off).
  const double tol = bf16 ? 1.0 / 256 : 1e-5;

  for (int64_t t = 0; t < n; ++t) {
    const int32_t* pages = block_tables.data() + token_table[t] * max_pages;
    auto row = [&](int64_t j) {
      return cache.data() + (pages[j / c.page_size] * c.page_size + j % c.page_size) * row_dim;
    };
    const int64_t len = positions[t] + 1;
    for (int64_t h = 0; h < c.heads; ++h) {
      const float* qh = q.data() + (t * c.heads + h) * row_dim;
      std::vector<double> p(len);
      double max_s = -INFINITY;
      for (int64_t j = 0; j < len; ++j) {
        double s = 0;
        for (int64_t k = 0; k < row_dim; ++k) s += static_cast<double>(qh[k]) * row(j)[k];
        p[j] = s * a.softmax_scale;
        max_s = std::max(max_s, p[j]);
      }
      double sum = 0;
      for (double& v : p) sum += (v = std::exp(v - max_s));
      double err = 0, norm = 0;
      for (int64_t k = 0; k < c.rank; ++k) {
        double want = 0;
        for (int64_t j = 0; j < len; ++j) want += p[j] / sum * row(j)[k];
        const double got = out[(t * c.heads + h) * c.rank + k];
        err = std::max(err, std::abs(got - want));
        norm = std::max(norm, std::abs(want));
      }
      ASSERT_LE(err, tol * std::max(1.0, norm)) << "token " << t << " head " << h;
    }
  }
}

TEST(OpsMlaAttention, MatchesReferenceOnEveryIsa) {
  std::mt19937 rng(11);
  const Case cases[] = {{512, 64, 16, 64},  {512, 64, 3, 16}, {48, 16, 11, 7},
                        {16, 16, 9, 5},     {20, 6, 5, 3},    {64, 32, 11, 16, 1600},
                        {20, 6, 3, 7, 1100}};
  for (CpuIsa isa : kAllCpuIsas) {
    if (!CpuSupports(isa)) {
      std::printf("OpsMlaAttention: %s not supported by this CPU, not tested\n", CpuIsaName(isa));
      continue;
    }
    for (int threads : {1, 3}) {
      for (DType act : {DType::kF32, DType::kBF16}) {
        const CpuContext ctx(threads, isa, act);
        for (const Case& c : cases) {
          CheckCase(ctx, c, rng);
          if (HasFatalFailure()) return;
        }
      }
    }
  }
}

}  // namespace
}  // namespace dsv2
