// Block-quantized weights (kernels/quant_blocks.h): each format's layout decoded by a second,
// independent reading of the specification (the published reference loops, written here
// element by element), the quantizers' error bounds, and MatMul on quantized weights on every
// ISA this CPU runs, in float32 and bfloat16 activations, against (a) the exact sum of the
// dequantized weights times the quantized activations, and (b) the double-precision reference
// on the unquantized activations.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/matmul_internal.h"
#include "kernels/cpu/quant_dot.h"
#include "kernels/cpu_context.h"
#include "kernels/exec_context.h"
#include "kernels/matmul.h"
#include "kernels/quant_blocks.h"

namespace dsv2 {
namespace {

constexpr DType kFormats[] = {DType::kQ8_0, DType::kQ4_0, DType::kQ5_0, DType::kIQ4_NL,
                              DType::kQ4_K, DType::kQ5_K, DType::kQ6_K};

float Half(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return F16ToFloat(h);
}

// The specification's decoding, loop for loop as the format documents it.
std::vector<float> SpecDecode(DType t, const uint8_t* b) {
  std::vector<float> y;
  switch (t) {
    case DType::kQ8_0:
      for (int j = 0; j < 32; ++j) y.push_back(Half(b) * static_cast<int8_t>(b[2 + j]));
      break;
    case DType::kQ4_0:
    case DType::kIQ4_NL:
      y.resize(32);
      for (int j = 0; j < 16; ++j) {
        const int x0 = b[2 + j] & 0x0F, x1 = b[2 + j] >> 4;
        y[j] = Half(b) * (t == DType::kQ4_0 ? x0 - 8 : kIq4NlLevels[x0]);
        y[j + 16] = Half(b) * (t == DType::kQ4_0 ? x1 - 8 : kIq4NlLevels[x1]);
      }
      break;
    case DType::kQ5_0: {
      uint32_t qh;
      std::memcpy(&qh, b + 2, 4);
      y.resize(32);
      for (int j = 0; j < 16; ++j) {
        const int xh0 = ((qh >> j) << 4) & 0x10, xh1 = (qh >> (j + 12)) & 0x10;
        y[j] = Half(b) * (((b[6 + j] & 0x0F) | xh0) - 16);
        y[j + 16] = Half(b) * (((b[6 + j] >> 4) | xh1) - 16);
      }
      break;
    }
    case DType::kQ4_K:
    case DType::kQ5_K: {
      const bool five = t == DType::kQ5_K;
      const uint8_t* q = b + (five ? 48 : 16);
      const uint8_t* qh = b + 16;
      int is = 0;
      uint8_t u1 = 1, u2 = 2;
      for (int j = 0; j < 256; j += 64) {
        int sc, m;
        ScaleMinK4(b + 4, is, &sc, &m);
        const float d1 = Half(b) * sc, m1 = Half(b + 2) * m;
        ScaleMinK4(b + 4, is + 1, &sc, &m);
        const float d2 = Half(b) * sc, m2 = Half(b + 2) * m;
        for (int l = 0; l < 32; ++l) {
          y.push_back(d1 * ((q[l] & 0xF) + (five && (qh[l] & u1) ? 16 : 0)) - m1);
        }
        for (int l = 0; l < 32; ++l) {
          y.push_back(d2 * ((q[l] >> 4) + (five && (qh[l] & u2) ? 16 : 0)) - m2);
        }
        q += 32;
        is += 2;
        u1 <<= 2;
        u2 <<= 2;
      }
      break;
    }
    case DType::kQ6_K: {
      y.resize(256);
      const uint8_t* ql = b;
      const uint8_t* qh = b + 128;
      const auto* sc = reinterpret_cast<const int8_t*>(b + 192);
      const float d = Half(b + 208);
      for (int n = 0; n < 256; n += 128) {
        for (int l = 0; l < 32; ++l) {
          const int is = l / 16;
          const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
          const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
          const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
          const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
          y[n + l] = d * sc[is] * q1;
          y[n + l + 32] = d * sc[is + 2] * q2;
          y[n + l + 64] = d * sc[is + 4] * q3;
          y[n + l + 96] = d * sc[is + 6] * q4;
        }
        ql += 64;
        qh += 32;
        sc += 8;
      }
      break;
    }
    default:
      break;
  }
  return y;
}

// Random bytes with sane scales (finite halves of moderate size) at the right places.
std::vector<uint8_t> RandomBlocks(DType t, int64_t blocks, std::mt19937& rng) {
  std::vector<uint8_t> bytes(blocks * BlockBytes(t));
  for (uint8_t& v : bytes) v = static_cast<uint8_t>(rng());
  std::uniform_real_distribution<float> scale(-0.02f, 0.02f);
  for (int64_t i = 0; i < blocks; ++i) {
    uint8_t* b = bytes.data() + i * BlockBytes(t);
    auto put = [&](uint8_t* p, float v) {
      const uint16_t h = FloatToF16(v);
      std::memcpy(p, &h, 2);
    };
    if (t == DType::kQ6_K) {
      put(b + 208, std::fabs(scale(rng)) * 0.1f);
    } else {
      put(b, t == DType::kQ4_K || t == DType::kQ5_K ? std::fabs(scale(rng)) * 0.1f : scale(rng));
      if (t == DType::kQ4_K || t == DType::kQ5_K) put(b + 2, std::fabs(scale(rng)) * 0.1f);
    }
  }
  return bytes;
}

TEST(QuantBlocks, EveryFormatDecodesAsTheSpecificationSays) {
  std::mt19937 rng(7);
  for (DType t : kFormats) {
    const int64_t blocks = 5;
    const std::vector<uint8_t> bytes = RandomBlocks(t, blocks, rng);
    std::vector<float> got(blocks * BlockElements(t));
    DequantizeRow(t, bytes.data(), got.data(), static_cast<int64_t>(got.size()));
    for (int64_t b = 0; b < blocks; ++b) {
      const std::vector<float> want = SpecDecode(t, bytes.data() + b * BlockBytes(t));
      ASSERT_EQ(static_cast<int64_t>(want.size()), BlockElements(t));
      for (size_t e = 0; e < want.size(); ++e) {
        const float g = got[b * BlockElements(t) + e];
        ASSERT_NEAR(g, want[e], 1e-6f * (1.0f + std::fabs(want[e])))
            << DTypeName(t) << " block " << b << " element " << e;
      }
    }
  }
}

TEST(QuantBlocks, HalfConversionRoundsToNearestEven) {
  EXPECT_EQ(FloatToF16(1.0f), 0x3C00);
  EXPECT_EQ(FloatToF16(-2.0f), 0xC000);
  EXPECT_EQ(FloatToF16(65504.0f), 0x7BFF);
  EXPECT_EQ(FloatToF16(1e6f), 0x7C00);
  EXPECT_EQ(FloatToF16(5.960464477539063e-08f), 0x0001);  // the smallest subnormal
  EXPECT_EQ(FloatToF16(1.0f + 1.0f / 2048), 0x3C00);      // a tie: to even
  EXPECT_EQ(FloatToF16(1.0f + 3.0f / 2048), 0x3C02);      // a tie: to even (up)
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> uni(-100.0f, 100.0f);
  for (int i = 0; i < 1000; ++i) {
    const float v = uni(rng);
    const float r = F16ToFloat(FloatToF16(v));
    EXPECT_LE(std::fabs(r - v), std::fabs(v) / 2048.0f) << v;
  }
}

// Root-mean-square error of quantize → dequantize relative to the RMS of the values, on normal
// values with one outlier: bounds just above a uniform quantizer's step/√12 over each block's
// range at the format's levels (Q8_0 ~0.005, Q4_K ~0.08: what the data here measured).
TEST(QuantBlocks, QuantizersKeepTheErrorOfTheirLevels) {
  struct Bound {
    DType t;
    double max_rel_rms;
  };
  const Bound bounds[] = {{DType::kQ8_0, 0.006}, {DType::kQ6_K, 0.03}, {DType::kQ5_0, 0.05},
                          {DType::kQ5_K, 0.04},  {DType::kQ4_0, 0.10}, {DType::kQ4_K, 0.08},
                          {DType::kIQ4_NL, 0.09}};
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  const int64_t n = 256 * 16;
  std::vector<float> x(n), back(n);
  for (float& v : x) v = normal(rng);
  x[100] = 0.3f;  // an outlier, as real weights have
  for (const Bound& b : bounds) {
    std::vector<uint8_t> q(RowBytes(b.t, n));
    QuantizeRow(b.t, x.data(), q.data(), n);
    DequantizeRow(b.t, q.data(), back.data(), n);
    double err = 0, ref = 0;
    for (int64_t i = 0; i < n; ++i) err += (back[i] - x[i]) * (back[i] - x[i]), ref += x[i] * x[i];
    const double rel = std::sqrt(err / ref);
    std::printf("%-7s relative RMS error %.4f (bound %.3f)\n", DTypeName(b.t).data(), rel,
                b.max_rel_rms);
    EXPECT_LT(rel, b.max_rel_rms) << DTypeName(b.t);
  }
  // All zeros stay zeros.
  std::vector<float> zeros(256, 0.0f), out(256, 1.0f);
  for (DType t : kFormats) {
    std::vector<uint8_t> q(RowBytes(t, 256));
    QuantizeRow(t, zeros.data(), q.data(), 256);
    DequantizeRow(t, q.data(), out.data(), 256);
    for (float v : out) ASSERT_EQ(v, 0.0f) << DTypeName(t);
  }
}

TEST(QuantBlocks, ParsesFormatNames) {
  DType t;
  ASSERT_TRUE(ParseQuantType("q4_k", &t));
  EXPECT_EQ(t, DType::kQ4_K);
  ASSERT_TRUE(ParseQuantType("Q8_0", &t));
  EXPECT_EQ(t, DType::kQ8_0);
  EXPECT_FALSE(ParseQuantType("q4_k_m", &t));
  EXPECT_FALSE(ParseQuantType("Q2_K", &t));
}

struct QuantCase {
  DType format;
  int64_t rows, blocks;
};

class OpsQuantMatMul : public ::testing::TestWithParam<CpuIsa> {};

// y = x·Wᵀ on quantized W, n tokens, in `act`; checked against the exact sum over the
// dequantized weights and the dequantized (quantized) activations, and against the reference.
void CheckProduct(CpuIsa isa, DType act, DType format, int64_t rows, int64_t cols, int64_t n,
                  bool accumulate, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> w(rows * cols), x(n * cols);
  for (float& v : w) v = 0.05f * normal(rng);
  for (float& v : x) v = normal(rng);
  x[0] = 8.0f;  // an activation outlier
  std::vector<uint8_t> wq(rows * RowBytes(format, cols));
  for (int64_t r = 0; r < rows; ++r) {
    QuantizeRow(format, &w[r * cols], wq.data() + r * RowBytes(format, cols), cols);
  }
  std::vector<uint16_t> x16(n * cols);
  if (act == DType::kBF16) {
    for (size_t i = 0; i < x.size(); ++i) x[i] = Bf16ToFloat(x16[i] = FloatToBf16(x[i]));
  }
  const WeightView view{
      .data = wq.data(), .dtype = format, .rows = rows, .cols = cols, .row_stride = cols};
  // The exact sum the kernels approximate (float32 sums of integer products).
  quant::ActQuantizer aq;
  const quant::QuantizedActs qa = aq.Quantize(x.data(), DType::kF32, n, cols, cols);
  std::vector<float> wd(cols);
  std::vector<double> exact(n * rows), ref(n * rows), start(n * rows), magnitude(n * rows);
  for (double& v : start) {
    v = accumulate ? normal(rng) : 0.0;
    if (act == DType::kBF16) v = Bf16ToFloat(FloatToBf16(static_cast<float>(v)));
  }
  for (int64_t r = 0; r < rows; ++r) {
    DequantizeRow(format, view.RowPtr(r), wd.data(), cols);
    for (int64_t t = 0; t < n; ++t) {
      double e = 0, f = 0, m = 0;
      for (int64_t k = 0; k < cols; ++k) {
        const double term =
            static_cast<double>(wd[k]) * qa.d[t * cols / 32 + k / 32] * qa.q[t * cols + k];
        e += term;
        m += std::fabs(term);
        f += static_cast<double>(wd[k]) * x[t * cols + k];
      }
      magnitude[t * rows + r] = m + std::fabs(start[t * rows + r]);
      exact[t * rows + r] = start[t * rows + r] + e;
      ref[t * rows + r] = start[t * rows + r] + f;
    }
  }
  CpuContext ctx(2, isa, act);
  std::vector<float> y32(n * rows);
  std::vector<uint16_t> y16(n * rows);
  for (size_t i = 0; i < y32.size(); ++i) {
    y32[i] = static_cast<float>(start[i]);
    y16[i] = FloatToBf16(y32[i]);
  }
  MatMulArgs args{.x = act == DType::kBF16 ? static_cast<const void*>(x16.data()) : x.data(),
                  .x_stride = cols,
                  .n = n,
                  .w = view,
                  .y = act == DType::kBF16 ? static_cast<void*>(y16.data()) : y32.data(),
                  .y_stride = rows,
                  .accumulate = accumulate};
  cpu::MatMul(ctx, args);
  const std::string what = std::string(CpuIsaName(isa)) + " " + PrecisionName(act) + " " +
                           std::string(DTypeName(format)) + " n=" + std::to_string(n);
  double scale = 0;
  for (double v : ref) scale = std::max(scale, std::fabs(v));
  for (int64_t i = 0; i < n * rows; ++i) {
    const double got = act == DType::kBF16 ? Bf16ToFloat(y16[i]) : y32[i];
    // float32 sums: ~32 float32 roundings of the summed magnitudes (the offsets are summed
    // apart from the products); bf16 adds one rounding of the output.
    const double exact_tol =
        4e-6 * magnitude[i] + (act == DType::kBF16 ? std::fabs(exact[i]) / 128 : 0);
    ASSERT_NEAR(got, exact[i], exact_tol) << what << " element " << i;
    // Activations at 8 bits per 32: within ~1% of the largest output of the reference.
    ASSERT_NEAR(got, ref[i], 0.02 * scale) << what << " element " << i << " vs reference";
  }
}

TEST_P(OpsQuantMatMul, EveryFormatMatchesTheExactSum) {
  const CpuIsa isa = GetParam();
  if (!CpuSupports(isa)) GTEST_SKIP() << CpuIsaName(isa) << " not supported here";
  std::mt19937 rng(5);
  for (DType format : kFormats) {
    const int64_t cols = BlockElements(format) == 256 ? 3 * 256 : 9 * 32;
    for (DType act : {DType::kF32, DType::kBF16}) {
      for (int64_t n : {1, 3, 6}) {
        CheckProduct(isa, act, format, 37, cols, n, n == 3, rng);
      }
    }
  }
}

// From a few dozen tokens a slab of W is dequantized and the float GEMM runs on it with x as
// it is: the result is x · dequantize(W)ᵀ within float32 sums (bf16: W's slab and y rounded
// to bf16). Where the CPU has no such GEMM (scalar; bf16 without AVX512_BF16) the int8 dot
// kernel serves, checked against the reference within its activation quantization.
TEST_P(OpsQuantMatMul, LargeBatchesRunTheGemmOnDequantizedSlabs) {
  const CpuIsa isa = GetParam();
  if (!CpuSupports(isa)) GTEST_SKIP() << CpuIsaName(isa) << " not supported here";
  std::mt19937 rng(13);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const int64_t rows = 70, n = 50;
  for (DType format : kFormats) {
    const int64_t cols = BlockElements(format) == 256 ? 2 * 256 : 11 * 32;
    std::vector<float> w(rows * cols), x(n * cols), wd(cols);
    for (float& v : w) v = 0.05f * normal(rng);
    for (float& v : x) v = Bf16ToFloat(FloatToBf16(normal(rng)));
    std::vector<uint8_t> wq(rows * RowBytes(format, cols));
    QuantizeRow(format, w.data(), wq.data(), rows * cols);
    const WeightView view{
        .data = wq.data(), .dtype = format, .rows = rows, .cols = cols, .row_stride = cols};
    std::vector<double> ref(n * rows), magnitude(n * rows);
    for (int64_t r = 0; r < rows; ++r) {
      DequantizeRow(format, view.RowPtr(r), wd.data(), cols);
      for (int64_t t = 0; t < n; ++t) {
        for (int64_t k = 0; k < cols; ++k) {
          ref[t * rows + r] += static_cast<double>(wd[k]) * x[t * cols + k];
          magnitude[t * rows + r] += std::fabs(static_cast<double>(wd[k]) * x[t * cols + k]);
        }
      }
    }
    double scale = 0;
    for (double v : ref) scale = std::max(scale, std::fabs(v));
    for (DType act : {DType::kF32, DType::kBF16}) {
      CpuContext ctx(2, isa, act);
      std::vector<float> y32(n * rows);
      std::vector<uint16_t> x16(n * cols), y16(n * rows);
      for (size_t i = 0; i < x.size(); ++i) x16[i] = FloatToBf16(x[i]);
      const bool bf16 = act == DType::kBF16;
      MatMulArgs a{.x = bf16 ? static_cast<const void*>(x16.data()) : x.data(),
                   .x_stride = cols,
                   .n = n,
                   .w = view,
                   .y = bf16 ? static_cast<void*>(y16.data()) : y32.data(),
                   .y_stride = rows};
      const bool gemm = !matmul_internal::TiledProduct::NeedsQuantizedActs(ctx, a);
      cpu::MatMul(ctx, a);
      const std::string what = std::string(CpuIsaName(isa)) + " " + PrecisionName(act) + " " +
                               std::string(DTypeName(format)) + (gemm ? " gemm" : " int8 dot");
      for (int64_t i = 0; i < n * rows; ++i) {
        const double got = bf16 ? Bf16ToFloat(y16[i]) : y32[i];
        const double tol = !gemm  ? 0.02 * scale
                           : bf16 ? magnitude[i] / 256 + std::fabs(ref[i]) / 128
                                  : 1e-5 * magnitude[i];
        ASSERT_NEAR(got, ref[i], tol) << what << " element " << i;
      }
    }
  }
}

TEST_P(OpsQuantMatMul, GroupSharesQuantizedActivationsAndEqualsOneCallEach) {
  const CpuIsa isa = GetParam();
  if (!CpuSupports(isa)) GTEST_SKIP() << CpuIsaName(isa) << " not supported here";
  std::mt19937 rng(9);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const int64_t cols = 512, rows = 40, n = 5;
  std::vector<float> x(n * cols), w(rows * cols);
  for (float& v : x) v = normal(rng);
  for (float& v : w) v = 0.05f * normal(rng);
  const DType formats[] = {DType::kQ4_K, DType::kQ8_0, DType::kQ6_K};
  std::vector<std::vector<uint8_t>> wq;
  for (DType f : formats) {
    wq.emplace_back(rows * RowBytes(f, cols));
    QuantizeRow(f, w.data(), wq.back().data(), rows * cols);
  }
  CpuContext ctx(2, isa, DType::kF32);
  std::vector<std::vector<float>> one(3, std::vector<float>(n * rows)), group = one;
  std::vector<MatMulArgs> products;
  for (int i = 0; i < 3; ++i) {
    MatMulArgs a{.x = x.data(),
                 .x_stride = cols,
                 .n = n,
                 .w = {.data = wq[i].data(),
                       .dtype = formats[i],
                       .rows = rows,
                       .cols = cols,
                       .row_stride = cols},
                 .y = one[i].data(),
                 .y_stride = rows};
    cpu::MatMul(ctx, a);
    a.y = group[i].data();
    products.push_back(a);
  }
  cpu::MatMulGroup(ctx, products);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(one[i], group[i]) << DTypeName(formats[i]);
}

INSTANTIATE_TEST_SUITE_P(AllIsas, OpsQuantMatMul, ::testing::ValuesIn(kAllCpuIsas),
                         [](const ::testing::TestParamInfo<CpuIsa>& info) {
                           return std::string(CpuIsaName(info.param));
                         });

}  // namespace
}  // namespace dsv2
