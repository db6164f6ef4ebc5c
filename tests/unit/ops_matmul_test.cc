// MatMul against the double-precision reference for every ISA this processor runs, every weight
// dtype, decode and prefill token counts, odd shapes, padded strides, accumulate and threads.
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "kernels/cpu_context.h"
#include "kernels/dtype.h"
#include "kernels/matmul.h"
#include "kernels/weight_view.h"

namespace dsv2 {
namespace {

constexpr float kSentinel = -12345.0f;  // fills the padding that must stay untouched

// A random weight [rows, cols] in `dtype`, rows `row_stride` elements apart.
struct RandomWeight {
  std::vector<uint8_t> bytes;
  WeightView view;

  RandomWeight(DType dtype, int64_t rows, int64_t cols, int64_t row_stride, std::mt19937& rng) {
    bytes.resize(static_cast<size_t>(rows * row_stride * DTypeSize(dtype)) + 1);
    std::uniform_real_distribution<float> uni(-1.0f, 1.0f);
    std::uniform_int_distribution<int> bits(0, 0xffff);
    for (int64_t i = 0; i < rows * row_stride; ++i) {
      if (dtype == DType::kF32) {
        reinterpret_cast<float*>(bytes.data())[i] = uni(rng);
      } else if (dtype == DType::kBF16) {
        reinterpret_cast<uint16_t*>(bytes.data())[i] = FloatToBf16(uni(rng));
      } else {
        // Sign, exponent 0..15 (subnormals included, magnitude < 2) and mantissa at random.
        const uint16_t b = static_cast<uint16_t>(bits(rng));
        reinterpret_cast<uint16_t*>(bytes.data())[i] = static_cast<uint16_t>(b & 0xbfffu);
      }
    }
    view = WeightView{bytes.data(), dtype, rows, cols, row_stride};
  }
};

std::vector<float> RandomFloats(int64_t n, std::mt19937& rng) {
  std::uniform_real_distribution<float> uni(-1.0f, 1.0f);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& f : v) f = uni(rng);
  return v;
}

struct Shape {
  int64_t n, rows, cols, pad;  // pad: extra elements per row of x, y and W
  bool accumulate;
};

std::string Describe(const Shape& s, int threads) {
  return "n=" + std::to_string(s.n) + " rows=" + std::to_string(s.rows) +
         " cols=" + std::to_string(s.cols) + " pad=" + std::to_string(s.pad) +
         " accumulate=" + std::to_string(s.accumulate) + " threads=" + std::to_string(threads);
}

// Runs MatMul and MatMulReference on the same fresh inputs and compares per token row.
void CheckShape(const CpuContext& ctx, DType dtype, const Shape& s, std::mt19937& rng) {
  SCOPED_TRACE(Describe(s, ctx.num_threads()));
  const RandomWeight w(dtype, s.rows, s.cols, s.cols + s.pad, rng);
  const int64_t x_stride = s.cols + s.pad, y_stride = s.rows + s.pad;
  const std::vector<float> x = RandomFloats(s.n * x_stride, rng);
  std::vector<float> y = RandomFloats(s.n * y_stride, rng);
  for (int64_t t = 0; t < s.n; ++t)
    for (int64_t r = s.rows; r < y_stride; ++r) y[t * y_stride + r] = kSentinel;
  std::vector<float> ref = y;

  // Relative error per token row, ‖y − ref‖ ≤ 1e-5·‖ref‖, plus 1e-7 of the magnitude of the
  // summed terms so that rows which cancel to almost nothing (rows=1, accumulate) still pass.
  std::vector<float> magnitude = y;
  for (float& m : magnitude) m = s.accumulate ? std::abs(m) : 0.0f;
  for (int64_t t = 0; t < s.n; ++t) {
    for (int64_t r = 0; r < s.rows; ++r) {
      double sum = 0.0;
      for (int64_t k = 0; k < s.cols; ++k) {
        sum += std::abs(x[t * x_stride + k] * LoadAsFloat(w.view.RowPtr(r), dtype, k));
      }
      magnitude[t * y_stride + r] += static_cast<float>(sum);
    }
  }

  MatMulArgs args{x.data(), x_stride, s.n, w.view, y.data(), y_stride, s.accumulate};
  MatMul(ctx, args);
  args.y = ref.data();
  MatMulReference(args);

  for (int64_t t = 0; t < s.n; ++t) {
    double err = 0.0, norm = 0.0, mag = 0.0;
    for (int64_t r = 0; r < s.rows; ++r) {
      const int64_t i = t * y_stride + r;
      const double d = static_cast<double>(y[i]) - ref[i];
      err += d * d;
      norm += static_cast<double>(ref[i]) * ref[i];
      mag += static_cast<double>(magnitude[i]) * magnitude[i];
    }
    ASSERT_LE(std::sqrt(err), 1e-5 * std::sqrt(norm) + 1e-7 * std::sqrt(mag)) << "token " << t;
    for (int64_t r = s.rows; r < y_stride; ++r) {
      ASSERT_EQ(y[t * y_stride + r], kSentinel) << "padding written, token " << t << " row " << r;
    }
  }
}

class OpsMatMul : public ::testing::TestWithParam<std::tuple<CpuIsa, DType>> {
 protected:
  void SetUp() override {
    if (!CpuSupports(isa())) GTEST_SKIP() << CpuIsaName(isa()) << " not supported here";
  }
  CpuIsa isa() const { return std::get<0>(GetParam()); }
  DType dtype() const { return std::get<1>(GetParam()); }
};

TEST_P(OpsMatMul, MatchesReferenceOnOddShapes) {
  std::mt19937 rng(1234);
  for (int threads : {1, 3}) {
    const CpuContext ctx(threads, isa());
    // Decode, small batches (dot kernel) and prefill sizes (packed kernel: n >= 32 or 48).
    for (int64_t n : {1, 2, 3, 7, 16, 33, 50, 77}) {
      // 1100 and 2048 span two packed column blocks of 1024, 1100 ending in a partial vector.
      for (int64_t cols : {1, 5, 17, 130, 1100, 2048}) {
        for (int64_t rows : {1, 13, 67}) {
          for (bool accumulate : {false, true}) {
            const int64_t pad = (n + cols + rows) % 2 == 0 ? 0 : 3;
            CheckShape(ctx, dtype(), Shape{n, rows, cols, pad, accumulate}, rng);
            if (HasFatalFailure()) return;
          }
        }
      }
    }
  }
}

// Enough rows for many work chunks per thread, in both the decode and the prefill paths.
TEST_P(OpsMatMul, MatchesReferenceOnManyRows) {
  std::mt19937 rng(99);
  const CpuContext ctx(2, isa());
  for (int64_t n : {1, 5, 12, 25, 60, 130}) {
    for (int64_t rows : {515, 1029}) {
      CheckShape(ctx, dtype(), Shape{n, rows, 300, 5, n % 2 == 1}, rng);
      if (HasFatalFailure()) return;
    }
  }
}

// Batched products (the absorbed attention's per-head W_UK / W_UV): one call over `batch`
// operands equals one call per operand bit for bit, and the reference.
TEST_P(OpsMatMul, BatchedEqualsOneCallPerOperand) {
  std::mt19937 rng(7);
  for (int threads : {1, 3}) {
    const CpuContext ctx(threads, isa());
    for (int64_t n : {1, 3, 50}) {
      for (const auto& [rows, cols] : {std::pair<int64_t, int64_t>{130, 33}, {21, 515}}) {
        SCOPED_TRACE("threads=" + std::to_string(threads) + " n=" + std::to_string(n) +
                     " rows=" + std::to_string(rows) + " cols=" + std::to_string(cols));
        const int64_t batch = 5, w_gap = 7;  // operands w_batch_stride apart, with a gap
        const int64_t w_batch_stride = rows * cols + w_gap;
        const RandomWeight all(dtype(), batch * w_batch_stride / cols + 1, cols, cols, rng);
        WeightView w = all.view;
        w.rows = rows;
        // x [n, batch, cols + 2] and y [n, batch, rows + 1]: operand b at column offset b·(...).
        const int64_t xb = cols + 2, yb = rows + 1;
        const std::vector<float> x = RandomFloats(n * batch * xb, rng);
        const std::vector<float> y0 = RandomFloats(n * batch * yb, rng);
        MatMulArgs args{.x = x.data(),
                        .x_stride = batch * xb,
                        .n = n,
                        .w = w,
                        .y = nullptr,
                        .y_stride = batch * yb,
                        .accumulate = n == 3,
                        .batch = batch,
                        .x_batch_stride = xb,
                        .w_batch_stride = w_batch_stride,
                        .y_batch_stride = yb};
        std::vector<float> batched = y0, single = y0, ref = y0;
        args.y = batched.data();
        MatMul(ctx, args);
        args.y = ref.data();
        MatMulReference(args);
        for (int64_t b = 0; b < batch; ++b) {
          MatMulArgs one = args;
          one.batch = 1;
          one.x = x.data() + b * xb;
          one.w.data =
              static_cast<const uint8_t*>(w.data) + b * w_batch_stride * DTypeSize(dtype());
          one.y = single.data() + b * yb;
          MatMul(ctx, one);
        }
        ASSERT_EQ(batched, single);
        for (size_t i = 0; i < ref.size(); ++i) {
          ASSERT_NEAR(batched[i], ref[i], 1e-4 * (1 + std::abs(ref[i]))) << "element " << i;
        }
      }
    }
  }
}

TEST_P(OpsMatMul, EmptyColsGiveZeroOrKeepY) {
  const CpuContext ctx(2, isa());
  const uint16_t dummy = 0;
  const WeightView w{&dummy, dtype(), 3, 0, 0};
  const float x = 1.0f;
  for (bool accumulate : {false, true}) {
    std::vector<float> y = {1.0f, 2.0f, 3.0f, 4.0f, 5.0f, 6.0f};
    MatMul(ctx, MatMulArgs{&x, 0, 2, w, y.data(), 3, accumulate});
    const std::vector<float> want =
        accumulate ? std::vector<float>{1, 2, 3, 4, 5, 6} : std::vector<float>(6, 0.0f);
    EXPECT_EQ(y, want);
  }
}

// bfloat16 activations (the CPU's --dtype bfloat16): x and y in bf16, y rounded once from the
// float32 sum (or y_float32), against the double reference on the same bf16 inputs rounded to
// bf16. Summation order may move a result across a rounding boundary: one bf16 step (2^-7
// relative at most) apart, plus 1e-5 of the summed magnitude; a wrong row or stride is O(1) off.
TEST_P(OpsMatMul, Bf16ActivationsMatchReferenceRounded) {
  std::mt19937 rng(77);
  auto bf16 = [](float f) { return FloatToBf16(f); };
  for (int threads : {1, 3}) {
    const CpuContext ctx(threads, isa(), DType::kBF16);
    for (int64_t n : {1, 3, 5, 8, 10, 23, 24, 50, 77}) {
      for (int64_t cols : {1, 31, 33, 130, 1100}) {
        for (int64_t rows : {1, 13, 67}) {
          for (int mode = 0; mode < 3; ++mode) {  // 0: y = x·Wᵀ, 1: y += x·Wᵀ, 2: y float32
            const bool accumulate = mode == 1, y_f32 = mode == 2;
            const int64_t pad = (n + cols + rows) % 2 == 0 ? 0 : 3;
            SCOPED_TRACE(Describe({n, rows, cols, pad, accumulate}, threads) +
                         " y_float32=" + std::to_string(y_f32));
            const RandomWeight w(dtype(), rows, cols, cols + pad, rng);
            const int64_t xs = cols + pad, ys = rows + pad;
            std::vector<uint16_t> x(n * xs), y(n * ys);
            std::vector<float> x32(n * xs), y32(n * ys);
            for (int64_t i = 0; i < n * xs; ++i) {  // NaN in the padding: it must not be read
              x[i] = i % xs < cols ? bf16(RandomFloats(1, rng)[0]) : uint16_t{0x7fc0};
              x32[i] = Bf16ToFloat(x[i]);
            }
            for (int64_t t = 0; t < n; ++t) {
              for (int64_t r = 0; r < ys; ++r) {
                const float v = r < rows ? RandomFloats(1, rng)[0] : kSentinel;
                y[t * ys + r] = bf16(v);
                y32[t * ys + r] = y_f32 ? v : Bf16ToFloat(y[t * ys + r]);
              }
            }
            std::vector<float> ref = y32, got32 = y32;
            MatMulArgs args{x.data(),
                            xs,
                            n,
                            w.view,
                            y_f32 ? static_cast<void*>(got32.data()) : static_cast<void*>(y.data()),
                            ys,
                            accumulate,
                            y_f32};
            MatMul(ctx, args);
            args.x = x32.data();
            args.y = ref.data();
            MatMulReference(args);
            for (int64_t t = 0; t < n; ++t) {
              for (int64_t r = 0; r < ys; ++r) {
                const int64_t i = t * ys + r;
                const float got = y_f32 ? got32[i] : Bf16ToFloat(y[i]);
                if (r >= rows) {
                  ASSERT_EQ(got, y32[i]) << "padding written, token " << t << " row " << r;
                  continue;
                }
                double mag = accumulate ? std::abs(y32[i]) : 0.0;
                for (int64_t k = 0; k < cols; ++k) {
                  mag += std::abs(x32[t * xs + k] * LoadAsFloat(w.view.RowPtr(r), dtype(), k));
                }
                const float want = y_f32 ? ref[i] : Bf16ToFloat(bf16(ref[i]));
                ASSERT_NEAR(got, want, std::ldexp(std::abs(want), -7) + 1e-5 * mag)
                    << "token " << t << " row " << r;
              }
            }
          }
        }
      }
    }
  }
}

// MatMulGroup: products of different shapes and token counts (dot and packed paths, an empty
// one, accumulate) in one region give exactly what MatMul gives on each, in both activation
// dtypes.
TEST_P(OpsMatMul, GroupEqualsOneCallPerProduct) {
  std::mt19937 rng(99);
  for (DType act : {DType::kF32, DType::kBF16}) {
    SCOPED_TRACE(PrecisionName(act));
    const CpuContext ctx(3, isa(), act);
    const int64_t es = DTypeSize(act);
    struct Case {
      int64_t n, rows, cols;  // odd products accumulate
    };
    const Case cases[] = {{1, 67, 130}, {5, 33, 64},  {0, 8, 8},  {30, 45, 100},
                          {50, 70, 33}, {7, 1, 1100}, {2, 13, 17}};
    std::vector<RandomWeight> weights;
    std::vector<std::vector<uint8_t>> xs, ys;
    for (const Case& c : cases) {
      weights.emplace_back(dtype(), c.rows, c.cols, c.cols, rng);
      std::vector<uint8_t> x(c.n * c.cols * es), y(c.n * c.rows * es);
      for (int64_t i = 0; i < c.n * c.cols; ++i) {
        const float v = RandomFloats(1, rng)[0];
        if (act == DType::kF32) {
          std::memcpy(x.data() + 4 * i, &v, 4);
        } else {
          const uint16_t b = FloatToBf16(v);
          std::memcpy(x.data() + 2 * i, &b, 2);
        }
      }
      for (uint8_t& b : y) b = static_cast<uint8_t>(rng());
      if (act == DType::kBF16) {  // finite bf16 values in y (accumulate reads them)
        for (size_t i = 0; i + 1 < y.size(); i += 2) y[i + 1] &= 0x3f;
      } else {
        for (size_t i = 0; i + 3 < y.size(); i += 4) y[i + 3] &= 0x3f;
      }
      xs.push_back(std::move(x));
      ys.push_back(std::move(y));
    }
    std::vector<std::vector<uint8_t>> single = ys, grouped = ys;
    std::vector<MatMulArgs> products;
    for (size_t i = 0; i < std::size(cases); ++i) {
      const Case& c = cases[i];
      MatMulArgs a{xs[i].data(),     c.cols, c.n,       weights[i].view,
                   single[i].data(), c.rows, i % 2 == 1};
      MatMul(ctx, a);
      a.y = grouped[i].data();
      products.push_back(a);
    }
    cpu::MatMulGroup(ctx, products);
    for (size_t i = 0; i < std::size(cases); ++i)
      ASSERT_EQ(grouped[i], single[i]) << "product " << i;
  }
}

std::string ParamName(const ::testing::TestParamInfo<std::tuple<CpuIsa, DType>>& info) {
  return std::string(CpuIsaName(std::get<0>(info.param))) + "_" +
         std::string(DTypeName(std::get<1>(info.param)));
}

INSTANTIATE_TEST_SUITE_P(AllIsasAndDtypes, OpsMatMul,
                         ::testing::Combine(::testing::ValuesIn(kAllCpuIsas),
                                            ::testing::Values(DType::kBF16, DType::kF16,
                                                              DType::kF32)),
                         ParamName);

TEST(OpsMatMulReference, SmallExample) {
  // W = [[1, 2], [3, 4], [5, 6]] (BF16, exact), x = [[1, -1], [0.5, 2]].
  std::vector<uint16_t> w_bits;
  for (float f : {1.0f, 2.0f, 3.0f, 4.0f, 5.0f, 6.0f}) w_bits.push_back(FloatToBf16(f));
  const WeightView w{w_bits.data(), DType::kBF16, 3, 2, 2};
  const std::vector<float> x = {1.0f, -1.0f, 0.5f, 2.0f};
  std::vector<float> y(6, 1.0f);
  MatMulReference(MatMulArgs{x.data(), 2, 2, w, y.data(), 3, /*accumulate=*/true});
  EXPECT_EQ(y, (std::vector<float>{0.0f, 0.0f, 0.0f, 5.5f, 10.5f, 15.5f}));
}

TEST(OpsCpuContext, ParallelForCoversEachIndexOnce) {
  for (int threads : {1, 2, 5}) {
    const CpuContext ctx(threads);
    for (int64_t n : {0, 1, 7, 1000}) {
      for (int64_t grain : {1, 3, 64}) {
        std::vector<int> hits(static_cast<size_t>(n), 0);
        for (int rep = 0; rep < 3; ++rep) {
          ctx.ParallelFor(n, grain, [&](int64_t begin, int64_t end) {
            for (int64_t i = begin; i < end; ++i) ++hits[static_cast<size_t>(i)];
          });
        }
        for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[static_cast<size_t>(i)], 3) << i;
      }
    }
  }
}

// Many short jobs back to back: workers arrive late, spin, sleep and wake in every order.
TEST(OpsCpuContext, ManyBackToBackJobs) {
  const CpuContext ctx(3);
  for (int64_t i = 0; i < 20000; ++i) {
    const int64_t n = i % 37 + 1;
    std::atomic<int64_t> sum{0};
    ctx.ParallelFor(n, 1, [&](int64_t begin, int64_t end) {
      for (int64_t j = begin; j < end; ++j) sum += j;
    });
    ASSERT_EQ(sum.load(), n * (n - 1) / 2) << "job " << i;
  }
}

}  // namespace
}  // namespace dsv2
