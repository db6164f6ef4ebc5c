// The small ops against direct scalar formulas on fresh random inputs.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <iterator>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "kernels/cast_rows.h"
#include "kernels/cpu_context.h"
#include "kernels/dtype.h"
#include "kernels/embedding.h"
#include "kernels/rms_norm.h"
#include "kernels/rope.h"
#include "kernels/router_topk.h"
#include "kernels/silu_mul.h"

namespace dsv2 {
namespace {

std::vector<float> RandomFloats(size_t n, std::mt19937& rng, float lo = -1.0f, float hi = 1.0f) {
  std::uniform_real_distribution<float> uni(lo, hi);
  std::vector<float> v(n);
  for (float& f : v) f = uni(rng);
  return v;
}

// |got - want| <= tol · max(1, |want|)
void ExpectClose(float got, double want, double tol) {
  EXPECT_LE(std::abs(got - want), tol * std::max(1.0, std::abs(want))) << got << " vs " << want;
}

TEST(OpsRmsNorm, MatchesFormulaWithStridesAndThreads) {
  std::mt19937 rng(7);
  for (int threads : {1, 3}) {
    const CpuContext ctx(threads);
    for (int64_t dim : {1, 7, 64, 2048}) {
      for (int64_t n : {1, 3, 40}) {
        const int64_t xs = dim + 3, ys = dim + 1;
        const std::vector<float> x = RandomFloats(n * xs, rng, -3.0f, 3.0f);
        const std::vector<float> w = RandomFloats(dim, rng, 0.5f, 1.5f);
        std::vector<float> y(n * ys, 0.0f);
        RmsNorm(ctx, RmsNormArgs{x.data(), y.data(), w.data(), n, dim, xs, ys, 1e-6f});
        for (int64_t r = 0; r < n; ++r) {
          double ss = 0.0;
          for (int64_t i = 0; i < dim; ++i)
            ss += static_cast<double>(x[r * xs + i]) * x[r * xs + i];
          const double inv = 1.0 / std::sqrt(ss / dim + 1e-6);
          for (int64_t i = 0; i < dim; ++i) {
            ExpectClose(y[r * ys + i], w[i] * (x[r * xs + i] * inv), 1e-6);
          }
        }
      }
    }
  }
}

TEST(OpsRmsNorm, InPlace) {
  std::mt19937 rng(8);
  const CpuContext ctx(2);
  const int64_t n = 5, dim = 100;
  std::vector<float> x = RandomFloats(n * dim, rng);
  const std::vector<float> w = RandomFloats(dim, rng);
  std::vector<float> separate(n * dim);
  RmsNorm(ctx, RmsNormArgs{x.data(), separate.data(), w.data(), n, dim, dim, dim, 1e-5f});
  RmsNorm(ctx, RmsNormArgs{x.data(), x.data(), w.data(), n, dim, dim, dim, 1e-5f});
  EXPECT_EQ(x, separate);
}

TEST(OpsRope, MatchesInterleavedFormula) {
  std::mt19937 rng(11);
  for (int threads : {1, 3}) {
    const CpuContext ctx(threads);
    for (int64_t dim : {2, 64, 192}) {
      const int64_t n_tokens = 9, n_vecs = 3, vec_stride = dim + 5,
                    token_stride = 3 * vec_stride + 2;
      std::vector<float> inv_freq(dim / 2);
      for (int64_t i = 0; i < dim / 2; ++i) inv_freq[i] = std::pow(10000.0f, -2.0f * i / dim);
      std::vector<int32_t> pos(n_tokens);
      for (int64_t t = 0; t < n_tokens; ++t) pos[t] = static_cast<int32_t>(t * 517 % 4096);
      const std::vector<float> orig = RandomFloats(n_tokens * token_stride, rng);
      std::vector<float> x = orig;
      const float factor = 0.75f;
      ApplyRope(ctx, RopeArgs{x.data(), n_tokens, n_vecs, token_stride, vec_stride, dim, pos.data(),
                              inv_freq.data(), factor});
      std::vector<float> want = orig;
      for (int64_t t = 0; t < n_tokens; ++t) {
        for (int64_t v = 0; v < n_vecs; ++v) {
          float* o = want.data() + t * token_stride + v * vec_stride;
          for (int64_t i = 0; i < dim / 2; ++i) {
            const double a = static_cast<float>(pos[t]) * inv_freq[i];  // float angle, as torch
            const double x0 = o[2 * i], x1 = o[2 * i + 1];
            o[2 * i] = static_cast<float>((x0 * std::cos(a) - x1 * std::sin(a)) * factor);
            o[2 * i + 1] = static_cast<float>((x1 * std::cos(a) + x0 * std::sin(a)) * factor);
          }
        }
      }
      for (size_t i = 0; i < x.size(); ++i) ExpectClose(x[i], want[i], 2e-6);
    }
  }
}

// The router's softmax (inside RouteOneToken, shared by both twins): with scaling 1 the weights
// of the selected experts are their softmax probabilities.
TEST(OpsRouterSoftmax, MatchesFormulaAndIsStable) {
  std::mt19937 rng(3);
  for (int32_t cols : {1, 6, 64, 256}) {
    std::vector<float> x = RandomFloats(cols, rng, -20.0f, 20.0f);
    x[0] = 1000.0f;  // exp would overflow without subtracting the max
    const RouterRule rule{.n_experts = cols, .top_k = std::min(cols, kMaxRouterTopK)};
    std::vector<float> scores(cols), w(rule.top_k);
    std::vector<int32_t> ids(rule.top_k);
    RouteOneToken(rule, x.data(), scores.data(), ids.data(), w.data());
    const double mx = *std::max_element(x.begin(), x.end());
    double sum = 0.0;
    for (float v : x) sum += std::exp(v - mx);
    EXPECT_EQ(ids[0], 0);
    for (int32_t i = 0; i < rule.top_k; ++i)
      ExpectClose(w[i], std::exp(x[ids[i]] - mx) / sum, 1e-6);
  }
}

// Every ISA the processor runs (vectorised e^x on AVX2 / AVX-512), 1 and 3 threads, rows long
// enough to be split, in place too; values near and past e^x's float32 range, zeros, infinities.
TEST(OpsSiluMul, MatchesFormulaOnEveryIsaIncludingInPlace) {
  std::mt19937 rng(5);
  const int64_t rows = 7, width = 2100;  // 3 pieces of a row; a partial vector at the end
  const size_t n = rows * width;
  std::vector<float> gate = RandomFloats(n, rng, -30.0f, 30.0f);
  const std::vector<float> up = RandomFloats(n, rng, -2.0f, 2.0f);
  const float kEdges[] = {0.0f,   -0.0f,  1e-30f, -1e-30f,  87.0f,   -87.0f, 88.7f,
                          -88.7f, 89.5f,  -89.5f, 103.0f,   -103.0f, 110.0f, -110.0f,
                          1e30f,  -1e30f, 20.5f,  -0.6931f, 1e-5f,   -1e-5f};
  for (size_t i = 0; i < std::size(kEdges); ++i) gate[37 * i] = kEdges[i];
  for (CpuIsa isa : kAllCpuIsas) {
    if (!CpuSupports(isa)) {
      std::printf("OpsSiluMul: %s not supported by this CPU, not tested\n", CpuIsaName(isa));
      continue;
    }
    for (int threads : {1, 3}) {
      SCOPED_TRACE(std::string(CpuIsaName(isa)) + " threads=" + std::to_string(threads));
      const CpuContext ctx(threads, isa);
      std::vector<float> out(n), in_place = gate;
      auto args = [&](const float* g, float* o) {
        return SiluMulArgs{.gate = g,
                           .up = up.data(),
                           .out = o,
                           .rows = rows,
                           .width = width,
                           .gate_stride = width,
                           .up_stride = width,
                           .out_stride = width};
      };
      SiluMul(ctx, args(gate.data(), out.data()));
      SiluMul(ctx, args(in_place.data(), in_place.data()));
      for (size_t i = 0; i < n; ++i) {
        const double g = gate[i];
        const double want = g / (1.0 + std::exp(-g)) * up[i];
        // 1e-6 relative: e^x to about 1 ulp, then a division and a product in float32.
        ExpectClose(out[i], want, 1e-6);
        if (HasFailure()) return;
      }
      EXPECT_EQ(in_place, out);
    }
  }
}

TEST(OpsRouterTopK, MatchesStableSortWithTies) {
  std::mt19937 rng(21);
  std::uniform_int_distribution<int> small(0, 9);  // many ties
  for (int64_t n : {1, 5, 64, 160, 400}) {
    for (int64_t k : {int64_t{1}, int64_t{6}, std::min<int64_t>(n, 64), n}) {
      if (k > n) continue;
      for (bool ties : {false, true}) {
        std::vector<float> v = RandomFloats(n, rng);
        if (ties) {
          for (float& f : v) f = static_cast<float>(small(rng)) * 0.5f;
        }
        std::vector<int32_t> order(n);
        std::iota(order.begin(), order.end(), 0);
        std::stable_sort(order.begin(), order.end(),
                         [&](int32_t a, int32_t b) { return v[a] > v[b]; });
        std::vector<int32_t> idx(k);
        std::vector<float> val(k);
        RouterTopKOf(v.data(), static_cast<int32_t>(n), static_cast<int32_t>(k), idx.data(),
                     val.data());
        for (int64_t i = 0; i < k; ++i) {
          ASSERT_EQ(idx[i], order[i]) << "n=" << n << " k=" << k << " i=" << i;
          ASSERT_EQ(val[i], v[order[i]]);
        }
      }
    }
  }
}

TEST(OpsRouterTopK, NanRanksFirstAndZeroSignsTie) {
  const std::vector<float> v = {0.0f, -0.0f, NAN, 1.0f};
  std::vector<int32_t> idx(4);
  std::vector<float> val(4);
  RouterTopKOf(v.data(), 4, 4, idx.data(), val.data());
  EXPECT_EQ(idx, (std::vector<int32_t>{2, 3, 0, 1}));
}

TEST(OpsEmbedding, CopiesRowsForEveryDtype) {
  std::mt19937 rng(13);
  const int64_t vocab = 50, dim = 33, stride = 40;
  const std::vector<float> f = RandomFloats(vocab * stride, rng, -4.0f, 4.0f);
  std::vector<uint16_t> bf(f.size()), hf(f.size());
  for (size_t i = 0; i < f.size(); ++i) {
    bf[i] = FloatToBf16(f[i]);
    hf[i] = static_cast<uint16_t>(rng() & 0xbfffu);  // finite halves, subnormals included
  }
  const std::vector<int32_t> ids = {0, 49, 7, 7, 23};
  for (DType dt : {DType::kF32, DType::kBF16, DType::kF16}) {
    const void* data = dt == DType::kF32    ? static_cast<const void*>(f.data())
                       : dt == DType::kBF16 ? static_cast<const void*>(bf.data())
                                            : static_cast<const void*>(hf.data());
    const WeightView table{data, dt, vocab, dim, stride};
    std::vector<float> out(ids.size() * dim, -1.0f);
    EmbeddingLookup(CpuContext(1), {.table = table,
                                    .ids = ids.data(),
                                    .n = static_cast<int64_t>(ids.size()),
                                    .out = out.data()});
    for (size_t t = 0; t < ids.size(); ++t) {
      for (int64_t i = 0; i < dim; ++i) {
        ASSERT_EQ(out[t * dim + i], LoadAsFloat(data, dt, ids[t] * stride + i)) << DTypeName(dt);
      }
    }
  }
}

// CastRows on the CPU: widening is exact, narrowing rounds to nearest even (ties to even, NaN
// stays NaN), and the added term is summed in float32 before the one rounding.
TEST(OpsCastRows, WidensNarrowsAndAddsBeforeRounding) {
  const CpuContext ctx(1);
  const std::vector<float> x = {1.0f, 1.00390625f, 1.01171875f, -2.5f, 3.0e38f};
  std::vector<uint16_t> b(x.size());
  CastRows(ctx, {.x = x.data(), .y = b.data(), .y_dtype = DType::kBF16, .n = 5});
  // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to even (1.0); 1 + 3·2^-8 rounds up.
  EXPECT_EQ(Bf16ToFloat(b[0]), 1.0f);
  EXPECT_EQ(Bf16ToFloat(b[1]), 1.0f);
  EXPECT_EQ(Bf16ToFloat(b[2]), 1.015625f);
  EXPECT_EQ(Bf16ToFloat(b[3]), -2.5f);
  std::vector<float> back(x.size());
  CastRows(ctx, {.x = b.data(), .x_dtype = DType::kBF16, .y = back.data(), .n = 5});
  for (size_t i = 0; i < x.size(); ++i) EXPECT_EQ(back[i], Bf16ToFloat(b[i]));
  // y = round(x + add): 1 + (2^-8 + 2^-9) rounds up although neither term alone would move 1.
  const float one = 1.0f, small = 0.005859375f;  // 2^-8 + 2^-9
  uint16_t sum = 0;
  CastRows(ctx, {.x = &one, .add = &small, .y = &sum, .y_dtype = DType::kBF16, .n = 1});
  EXPECT_EQ(Bf16ToFloat(sum), 1.0078125f);
  // In place, float32: y aliases x.
  std::vector<float> v = {1.5f, -1.0f};
  const std::vector<float> d = {0.25f, 0.5f};
  CastRows(ctx, {.x = v.data(), .add = d.data(), .y = v.data(), .n = 2});
  EXPECT_EQ(v, (std::vector<float>{1.75f, -0.5f}));
}

}  // namespace
}  // namespace dsv2
