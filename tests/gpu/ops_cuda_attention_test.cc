// CUDA parity of the latent-cache ops: MlaAttention over a paged cache (decode tokens and
// prefill chunks in one call, long sequences that the GPU splits) and LatentCacheWrite (the
// written rows, and every other element of the pool untouched).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "kernels/dtype.h"
#include "kernels/exec_context.h"
#include "kernels/latent_cache_write.h"
#include "kernels/mla_attention.h"
#include "tests/gpu/cuda_test_util.h"

namespace dsv2 {
namespace {

using cuda_test::DeviceScratch;
using cuda_test::ExpectAllClose;
using cuda_test::kF32LongSumTol;
using cuda_test::NanVector;
using cuda_test::RandomFloats;
using cuda_test::Rms;

class CudaAttentionTest : public cuda_test::CudaOpTest {};

std::vector<float> InvFreq(int64_t rope_dim) {
  std::vector<float> f(rope_dim / 2);
  for (int64_t i = 0; i < rope_dim / 2; ++i) {
    f[i] = std::pow(10000.0f, -2.0f * static_cast<float>(i) / static_cast<float>(rope_dim));
  }
  return f;
}

struct AttentionCase {
  int64_t kv_lora_rank, rope_dim, page_size, n_heads;
};

// One sequence of the batch: `len` rows cached, queries at positions [first_query, len).
struct Sequence {
  int32_t len, first_query;
};

// Six sequences in one call: decode tokens of lengths 1, 37, 2500 and 4100 (the long ones span
// many GPU splits) and prefill chunks (17 tokens ending at 2047; a fresh 3-token prompt),
// interleaved. Pages are a shuffled permutation of the pool with a gap between pages; unused
// block-table entries are -1. The cache, including rows no query may read, is random.
// float32 tolerance 1e-4 and a floor at the RMS of the outputs: the GPU sums thousands of rows
// per query in split spans merged by online-softmax rescaling (a different order), and the
// outputs, weighted means of values in [-1, 1], are mostly far below 1.
TEST_P(CudaAttentionTest, MlaAttention) {
  std::mt19937 rng(808);
  const ExecContext on_cpu(cpu());
  const ExecContext on_gpu(cuda());
  const std::vector<Sequence> seqs = {{1, 0}, {2047, 2030}, {2500, 2499},
                                      {3, 0}, {37, 36},     {4100, 4099}};
  const std::vector<AttentionCase> cases = {{512, 64, 1, 16},  {512, 64, 5, 3}, {512, 64, 64, 1},
                                            {512, 64, 64, 16}, {33, 2, 5, 3},   {33, 2, 64, 16}};
  for (const AttentionCase& c : cases) {
    SCOPED_TRACE("kv_lora_rank=" + std::to_string(c.kv_lora_rank) + " rope_dim=" +
                 std::to_string(c.rope_dim) + " page_size=" + std::to_string(c.page_size) +
                 " heads=" + std::to_string(c.n_heads));
    const int64_t row_dim = c.kv_lora_rank + c.rope_dim;
    const int64_t n_tables = static_cast<int64_t>(seqs.size());
    int64_t max_pages = 0, used_pages = 0;
    for (const Sequence& s : seqs) {
      const int64_t pages = (s.len + c.page_size - 1) / c.page_size;
      max_pages = std::max(max_pages, pages);
      used_pages += pages;
    }
    max_pages += 1;  // a trailing -1 entry in every table
    const int64_t num_pages = used_pages + 3;
    std::vector<int32_t> page_ids(num_pages);
    std::iota(page_ids.begin(), page_ids.end(), 0);
    std::shuffle(page_ids.begin(), page_ids.end(), rng);
    std::vector<int32_t> tables(n_tables * max_pages, -1);
    int64_t next = 0;
    for (int64_t s = 0; s < n_tables; ++s) {
      const int64_t pages = (seqs[s].len + c.page_size - 1) / c.page_size;
      for (int64_t p = 0; p < pages; ++p) tables[s * max_pages + p] = page_ids[next++];
    }

    // Query tokens: each sequence's queries in order, sequences in the order above.
    std::vector<int32_t> positions, token_table;
    for (int64_t s = 0; s < n_tables; ++s) {
      for (int32_t p = seqs[s].first_query; p < seqs[s].len; ++p) {
        positions.push_back(p);
        token_table.push_back(static_cast<int32_t>(s));
      }
    }
    const int64_t n_tokens = static_cast<int64_t>(positions.size());
    const int32_t max_position = *std::max_element(positions.begin(), positions.end());

    const int64_t page_stride = c.page_size * row_dim + 16;
    const std::vector<float> cache = Act(RandomFloats(num_pages * page_stride, rng));
    const std::vector<float> q = Act(RandomFloats(n_tokens * c.n_heads * row_dim, rng, -2, 2));
    const int64_t out_elems = n_tokens * c.n_heads * c.kv_lora_rank;
    // Scores with a standard deviation near 2.7: peaked enough that the running max moves.
    const float scale = 4.0f / std::sqrt(static_cast<float>(row_dim));

    DeviceScratch dev(cuda());
    void* d_cache = dev.UploadAs(act(), cache);
    const void* d_q = dev.UploadAs(act(), q);
    const int32_t* d_positions = dev.Upload(positions);
    const int32_t* d_token_table = dev.Upload(token_table);
    const int32_t* d_tables = dev.Upload(tables);
    void* d_out = dev.Poisoned(out_elems * DTypeSize(act()));
    ASSERT_TRUE(dev.ok()) << dev.status();

    std::vector<float> host_cache = cache;
    std::vector<float> out = NanVector(out_elems);
    MlaAttentionArgs a;
    a.q = q.data();
    a.out = out.data();
    a.n_tokens = n_tokens;
    a.n_heads = c.n_heads;
    a.kv_lora_rank = c.kv_lora_rank;
    a.rope_dim = c.rope_dim;
    a.positions = positions.data();
    a.token_table = token_table.data();
    a.block_tables = tables.data();
    a.max_pages = max_pages;
    a.max_position = max_position;
    a.cache =
        LatentCacheLayerView{host_cache.data(), DType::kF32, page_stride, c.page_size, row_dim};
    a.softmax_scale = scale;
    MlaAttention(on_cpu, a);
    a.q = d_q;
    a.out = d_out;
    a.positions = d_positions;
    a.token_table = d_token_table;
    a.block_tables = d_tables;
    a.cache.base = d_cache;
    a.cache.dtype = act();
    MlaAttention(on_gpu, a);

    const std::vector<float> got = dev.DownloadAs(act(), d_out, out_elems);
    const std::vector<float> cache_after = dev.DownloadAs(act(), d_cache, num_pages * page_stride);
    ASSERT_TRUE(dev.ok()) << dev.status();
    ExpectAllClose(got, out, Tol(kF32LongSumTol), "o_lat", Rms(out));
    ExpectAllClose(cache_after, cache, 0.0, "cache (read only)");
  }
}

// Fused RMSNorm + RoPE into the slots of a paged pool with gaps between pages: slots distinct
// and scattered, positions up to 20k. The slot rows start as NaN (so a row left unwritten
// fails); every other element of the pool, gaps included, must keep its bits.
TEST_P(CudaAttentionTest, LatentCacheWrite) {
  std::mt19937 rng(909);
  const ExecContext on_cpu(cpu());
  const ExecContext on_gpu(cuda());
  for (int64_t kv : {512, 33}) {
    const int64_t rope = kv == 512 ? 64 : 2;
    const int64_t row_dim = kv + rope;
    const std::vector<float> inv_freq = InvFreq(rope);
    for (int64_t page_size : {1, 5, 64}) {
      for (int64_t n_tokens : {1, 3, 17}) {
        SCOPED_TRACE("kv_lora_rank=" + std::to_string(kv) + " page_size=" +
                     std::to_string(page_size) + " tokens=" + std::to_string(n_tokens));
        const int64_t num_pages = (40 + page_size - 1) / page_size + 2;
        const int64_t page_stride = page_size * row_dim + 8;
        const int64_t pool_rows = num_pages * page_size;
        const int64_t ckv_stride = row_dim + 5;
        std::vector<int64_t> all_slots(pool_rows);
        std::iota(all_slots.begin(), all_slots.end(), 0);
        std::shuffle(all_slots.begin(), all_slots.end(), rng);
        const std::vector<int64_t> slots(all_slots.begin(), all_slots.begin() + n_tokens);
        std::vector<int32_t> positions(n_tokens);
        std::uniform_int_distribution<int32_t> pick(0, 20000);
        for (int32_t& p : positions) p = pick(rng);

        const std::vector<float> ckv = Act(RandomFloats(n_tokens * ckv_stride, rng, -3, 3));
        const std::vector<float> norm_w = RandomFloats(kv, rng, 0.5f, 1.5f);
        std::vector<float> cache = Act(RandomFloats(num_pages * page_stride, rng));
        std::vector<bool> in_slot(cache.size(), false);
        for (int64_t s : slots) {
          const int64_t row = (s / page_size) * page_stride + (s % page_size) * row_dim;
          for (int64_t i = 0; i < row_dim; ++i) {
            cache[row + i] = std::nanf("");
            in_slot[row + i] = true;
          }
        }

        DeviceScratch dev(cuda());
        const void* d_ckv = dev.UploadAs(act(), ckv);
        const float* d_norm_w = dev.Upload(norm_w);
        const int32_t* d_positions = dev.Upload(positions);
        const int64_t* d_slots = dev.Upload(slots);
        const float* d_inv_freq = dev.Upload(inv_freq);
        void* d_cache = dev.UploadAs(act(), cache);
        ASSERT_TRUE(dev.ok()) << dev.status();

        std::vector<float> want = cache;
        LatentCacheWriteArgs a;
        a.ckv = ckv.data();
        a.ckv_stride = ckv_stride;
        a.n_tokens = n_tokens;
        a.kv_lora_rank = kv;
        a.rope_dim = rope;
        a.norm_weight = norm_w.data();
        a.eps = 1e-6f;
        a.positions = positions.data();
        a.slots = slots.data();
        a.inv_freq = inv_freq.data();
        a.attn_factor = 0.707f;
        a.cache = LatentCacheLayerView{want.data(), DType::kF32, page_stride, page_size, row_dim};
        LatentCacheWrite(on_cpu, a);
        a.ckv = d_ckv;
        a.norm_weight = d_norm_w;
        a.positions = d_positions;
        a.slots = d_slots;
        a.inv_freq = d_inv_freq;
        a.cache.base = d_cache;
        a.cache.dtype = act();
        LatentCacheWrite(on_gpu, a);

        const std::vector<float> got = dev.DownloadAs(act(), d_cache, num_pages * page_stride);
        ASSERT_TRUE(dev.ok()) << dev.status();
        std::vector<float> got_rows, want_rows, got_rest, want_rest;
        for (size_t i = 0; i < got.size(); ++i) {
          (in_slot[i] ? got_rows : got_rest).push_back(got[i]);
          (in_slot[i] ? want_rows : want_rest).push_back(want[i]);
        }
        ASSERT_EQ(static_cast<int64_t>(want_rows.size()), n_tokens * row_dim);
        for (float w : want_rows) ASSERT_FALSE(std::isnan(w)) << "the CPU twin left a slot row";
        ExpectAllClose(got_rows, want_rows, Tol(), "written rows");
        ExpectAllClose(got_rest, want_rest, 0.0, "other elements (must keep their bits)");
      }
    }
  }
}

DSV2_CUDA_DTYPE_SUITE(CudaAttentionTest);

}  // namespace
}  // namespace dsv2
