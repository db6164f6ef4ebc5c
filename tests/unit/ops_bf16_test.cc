// The row-wise CPU ops in bfloat16 (--dtype bfloat16 on the CPU) on every ISA this processor
// runs: the same bf16 values go through the op in bfloat16 and in float32, and the bf16 result
// must be the float32 result rounded where the contract rounds (kernels/*.h, the CUDA twins'
// points). Single-rounding ops must match bit for bit; RMSNorm and the latent cache write, which
// round twice, are checked against their formula within one bf16 step.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu_context.h"
#include "kernels/dtype.h"
#include "kernels/embedding.h"
#include "kernels/latent_cache_write.h"
#include "kernels/rms_norm.h"
#include "kernels/rope.h"
#include "kernels/silu_mul.h"

namespace dsv2 {
namespace {

// Values rounded to bf16, with their bits.
struct Bf16Values {
  std::vector<float> f;
  std::vector<uint16_t> bits;
};

Bf16Values RandomBf16(size_t n, std::mt19937& rng, float lo, float hi) {
  std::uniform_real_distribution<float> uni(lo, hi);
  Bf16Values v{std::vector<float>(n), std::vector<uint16_t>(n)};
  for (size_t i = 0; i < n; ++i) v.f[i] = Bf16ToFloat(v.bits[i] = FloatToBf16(uni(rng)));
  return v;
}

float Round(float v) { return Bf16ToFloat(FloatToBf16(v)); }

std::vector<CpuIsa> IsasHere(const char* what) {
  std::vector<CpuIsa> isas;
  for (CpuIsa isa : kAllCpuIsas) {
    if (CpuSupports(isa)) {
      isas.push_back(isa);
    } else {
      std::printf("%s: %s not supported by this CPU, not tested\n", what, CpuIsaName(isa));
    }
  }
  return isas;
}

// Bit for bit: bf16 result == round(float32 result).
void ExpectRoundedEqual(const std::vector<uint16_t>& got, const std::vector<float>& f32,
                        const std::string& what) {
  ASSERT_EQ(got.size(), f32.size());
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_EQ(got[i], FloatToBf16(f32[i])) << what << " element " << i << ": " << f32[i];
  }
}

TEST(OpsBf16, SiluMulRopeEmbeddingRoundOnce) {
  std::mt19937 rng(3);
  const int64_t rows = 5, width = 2100;  // pieces of 1024 and a partial vector
  const Bf16Values gate = RandomBf16(rows * width, rng, -12.0f, 12.0f);
  const Bf16Values up = RandomBf16(rows * width, rng, -2.0f, 2.0f);
  const int64_t tokens = 3, heads = 5, dim = 64, stride = 72;
  const Bf16Values x = RandomBf16(tokens * heads * stride, rng, -3.0f, 3.0f);
  const std::vector<int32_t> positions = {0, 7, 4095};
  std::vector<float> inv_freq(dim / 2);
  for (int64_t i = 0; i < dim / 2; ++i) inv_freq[i] = std::pow(10000.0f, -2.0f * i / dim);
  const Bf16Values table = RandomBf16(11 * 40, rng, -1.0f, 1.0f);
  const std::vector<int32_t> ids = {4, 0, 10, 4};
  for (CpuIsa isa : IsasHere("OpsBf16")) {
    SCOPED_TRACE(CpuIsaName(isa));
    const CpuContext f32(3, isa), bf16(3, isa, DType::kBF16);
    // SiLU·mul.
    std::vector<float> out32(rows * width);
    std::vector<uint16_t> out16(rows * width);
    SiluMulArgs s{.rows = rows,
                  .width = width,
                  .gate_stride = width,
                  .up_stride = width,
                  .out_stride = width};
    s.gate = gate.f.data(), s.up = up.f.data(), s.out = out32.data();
    SiluMul(f32, s);
    s.gate = gate.bits.data(), s.up = up.bits.data(), s.out = out16.data();
    SiluMul(bf16, s);
    ExpectRoundedEqual(out16, out32, "SiluMul");
    // Rope, in place and into another layout.
    RopeArgs r{.n_tokens = tokens,
               .n_vecs = heads,
               .token_stride = heads * stride,
               .vec_stride = stride,
               .dim = dim,
               .positions = positions.data(),
               .inv_freq = inv_freq.data(),
               .attn_factor = 1.25f};
    std::vector<float> x32 = x.f;
    std::vector<uint16_t> x16 = x.bits;
    r.x = x32.data();
    ApplyRope(f32, r);
    r.x = x16.data();
    ApplyRope(bf16, r);
    ExpectRoundedEqual(x16, x32, "ApplyRope");
    // Embedding of a BF16 table: the rows as they are.
    const WeightView view{table.bits.data(), DType::kBF16, 11, 40, 40};
    std::vector<float> e32(ids.size() * 40);
    std::vector<uint16_t> e16(ids.size() * 40);
    EmbeddingLookup(f32, {.table = view, .ids = ids.data(), .n = 4, .out = e32.data()});
    EmbeddingLookup(bf16, {.table = view, .ids = ids.data(), .n = 4, .out = e16.data()});
    ExpectRoundedEqual(e16, e32, "EmbeddingLookup");
  }
}

// y = round(w · round(x · inv_rms)) after x ← round(x + add), inv_rms from the rounded x.
TEST(OpsBf16, RmsNormAndCacheWriteRoundTwice) {
  std::mt19937 rng(4);
  const int64_t n = 6, dim = 300, rank = 64, rope = 16, row_dim = rank + rope;
  const Bf16Values x = RandomBf16(n * dim, rng, -3.0f, 3.0f);
  const Bf16Values add = RandomBf16(n * dim, rng, -2.0f, 2.0f);
  std::vector<float> w(dim);
  for (float& v : w) v = std::uniform_real_distribution<float>(0.5f, 1.5f)(rng);
  const Bf16Values ckv = RandomBf16(n * row_dim, rng, -2.0f, 2.0f);
  const std::vector<int32_t> positions = {0, 1, 2, 9, 10, 11};
  const std::vector<int64_t> slots = {3, 0, 7, 1, 6, 2};
  std::vector<float> inv_freq(rope / 2);
  for (int64_t i = 0; i < rope / 2; ++i) inv_freq[i] = std::pow(10000.0f, -2.0f * i / rope);
  // One bf16 step of the value, plus float32 noise in the statistics.
  auto close = [](float got, double want) {
    return std::abs(got - want) <= std::ldexp(std::abs(want), -7) + 1e-6;
  };
  for (CpuIsa isa : IsasHere("OpsBf16")) {
    SCOPED_TRACE(CpuIsaName(isa));
    const CpuContext bf16(3, isa, DType::kBF16);
    std::vector<uint16_t> xr = x.bits, y(n * dim);
    RmsNorm(bf16, {.x = xr.data(),
                   .y = y.data(),
                   .weight = w.data(),
                   .n = n,
                   .dim = dim,
                   .x_stride = dim,
                   .y_stride = dim,
                   .eps = 1e-6f,
                   .add = add.bits.data()});
    for (int64_t r = 0; r < n; ++r) {
      double ss = 0;
      for (int64_t i = 0; i < dim; ++i) {
        const float s = Round(x.f[r * dim + i] + add.f[r * dim + i]);
        ASSERT_EQ(xr[r * dim + i], FloatToBf16(s)) << "residual, row " << r << " i " << i;
        ss += double(s) * s;
      }
      const double inv_rms = 1.0 / std::sqrt(ss / dim + 1e-6);
      for (int64_t i = 0; i < dim; ++i) {
        const double want = Round(w[i] * Round(float(Bf16ToFloat(xr[r * dim + i]) * inv_rms)));
        ASSERT_TRUE(close(Bf16ToFloat(y[r * dim + i]), want)) << "row " << r << " i " << i;
      }
    }
    // The latent cache write: [round(w · round(c · inv_rms)) | round(rope(k_pe))] per slot.
    std::vector<uint16_t> cache(8 * row_dim, 0xffff);
    LatentCacheWrite(bf16, {.ckv = ckv.bits.data(),
                            .ckv_stride = row_dim,
                            .n_tokens = n,
                            .kv_lora_rank = rank,
                            .rope_dim = rope,
                            .norm_weight = w.data(),
                            .eps = 1e-6f,
                            .positions = positions.data(),
                            .slots = slots.data(),
                            .inv_freq = inv_freq.data(),
                            .attn_factor = 1.0f,
                            .cache = {cache.data(), DType::kBF16, 4 * row_dim, 4, row_dim}});
    for (int64_t t = 0; t < n; ++t) {
      const float* c = ckv.f.data() + t * row_dim;
      const uint16_t* row = cache.data() + slots[t] * row_dim;
      double ss = 0;
      for (int64_t i = 0; i < rank; ++i) ss += double(c[i]) * c[i];
      const double inv_rms = 1.0 / std::sqrt(ss / rank + 1e-6);
      for (int64_t i = 0; i < rank; ++i) {
        const double want = Round(w[i] * Round(float(c[i] * inv_rms)));
        ASSERT_TRUE(close(Bf16ToFloat(row[i]), want)) << "token " << t << " i " << i;
      }
      for (int64_t i = 0; i < rope / 2; ++i) {
        const double a = double(positions[t]) * inv_freq[i];
        const double re = c[rank + 2 * i] * std::cos(a) - c[rank + 2 * i + 1] * std::sin(a);
        ASSERT_TRUE(close(Bf16ToFloat(row[rank + 2 * i]), re)) << "token " << t << " pair " << i;
      }
    }
  }
}

}  // namespace
}  // namespace dsv2
