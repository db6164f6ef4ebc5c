// quant_bench: MatMul on block-quantized weights (kernels/quant_blocks.h) beside bf16 weights,
// on every ISA the processor runs from AVX2 up, all threads: one token over a weight set much
// larger than the caches (GB/s: decode is a stream of weights), and 8 / 32 / 128 tokens over
// a [11264, 2048] weight (GFLOP/s: the int8 dot kernel below ~24 tokens, a dequantized slab
// and the float GEMM above). Plus how fast each format quantizes (--quantize, dsv2-quantize).
//   quant_bench [--quick]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "kernels/cpu_context.h"
#include "kernels/matmul.h"
#include "kernels/quant_blocks.h"

namespace dsv2 {
namespace {

double BestOf(int reps, const std::function<void()>& fn) {
  double best = 1e30;
  for (int i = 0; i < reps; ++i) {
    const auto start = std::chrono::steady_clock::now();
    fn();
    best = std::min(
        best, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  return best;
}

constexpr DType kFormats[] = {DType::kBF16, DType::kQ8_0, DType::kQ6_K, DType::kQ5_K,
                              DType::kQ5_0, DType::kQ4_K, DType::kQ4_0, DType::kIQ4_NL};

// `rows` × cols weights in format t: 4,096 distinct random rows (normal, σ 0.02), repeated.
std::vector<uint8_t> Weights(DType t, int64_t rows, int64_t cols) {
  constexpr int64_t kDistinct = 4096;
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  std::vector<float> w(std::min(rows, kDistinct) * cols);
  for (float& v : w) v = normal(rng);
  const int64_t row_bytes = RowBytes(t, cols);
  std::vector<uint8_t> out(rows * row_bytes);
  const int64_t distinct = std::min(rows, kDistinct);
  for (int64_t r = 0; r < distinct; ++r) QuantizeRow(t, &w[r * cols], &out[r * row_bytes], cols);
  for (int64_t r = distinct; r < rows; ++r) {
    std::memcpy(&out[r * row_bytes], &out[(r % distinct) * row_bytes], row_bytes);
  }
  return out;
}

}  // namespace
}  // namespace dsv2

int main(int argc, char** argv) {
  using namespace dsv2;
  bool quick = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) {
      quick = true;
    } else {
      std::printf(
          "quant_bench: MatMul on block-quantized weights beside bf16, every ISA from AVX2 "
          "up, all threads.\n  quant_bench [--quick]\n  --quick  a smaller weight set\n");
      return std::strcmp(argv[i], "--help") == 0 || std::strcmp(argv[i], "-h") == 0 ? 0 : 2;
    }
  }
  const int threads = std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  const int64_t cols = 2048, big_rows = quick ? 45056 : 180224, rows = 11264;
  std::printf(
      "| format | ISA | activations | 1 token, [%lld, 2048] (GB/s) | 8 tokens | 32 tokens "
      "| 128 tokens (GFLOP/s, [%lld, 2048]) |\n|---|---|---|---|---|---|---|\n",
      static_cast<long long>(big_rows), static_cast<long long>(rows));
  std::vector<CpuIsa> isas;
  for (CpuIsa isa : kAllCpuIsas) {
    if (isa >= CpuIsa::kAvx2 && CpuSupports(isa)) isas.push_back(isa);
  }
  for (DType t : kFormats) {
    const std::vector<uint8_t> w = Weights(t, big_rows, cols);  // once per format
    for (CpuIsa isa : isas) {
      const DType act = isa >= CpuIsa::kAvx512Bf16 ? DType::kBF16 : DType::kF32;
      const CpuContext ctx(threads, isa, act);
      std::string line = std::string("| ") + DTypeName(t).data() + " | " + CpuIsaName(isa) + " | " +
                         PrecisionName(act) + " |";
      for (int64_t n : {1, 8, 32, 128}) {
        const int64_t r = n == 1 ? big_rows : rows;
        std::vector<float> x(n * cols, 0.5f), y(n * r);
        std::vector<uint16_t> x16(n * cols, FloatToBf16(0.5f)), y16(n * r);
        const bool bf16 = act == DType::kBF16;
        const MatMulArgs a{
            .x = bf16 ? static_cast<const void*>(x16.data()) : x.data(),
            .x_stride = cols,
            .n = n,
            .w = {.data = w.data(), .dtype = t, .rows = r, .cols = cols, .row_stride = cols},
            .y = bf16 ? static_cast<void*>(y16.data()) : y.data(),
            .y_stride = r};
        cpu::MatMul(ctx, a);
        const double s = BestOf(5, [&] { cpu::MatMul(ctx, a); });
        char cell[64];
        if (n == 1) {
          std::snprintf(cell, sizeof(cell), " %.1f |", r * RowBytes(t, cols) / s / 1e9);
        } else {
          std::snprintf(cell, sizeof(cell), " %.0f |", 2.0 * n * r * cols / s / 1e9);
        }
        line += cell;
      }
      std::printf("%s\n", line.c_str());
      std::fflush(stdout);
    }
  }
  std::printf("\n| format | quantizing, one thread (M weights/s) |\n|---|---|\n");
  std::vector<float> src(256 * cols, 0.01f);
  std::mt19937 rng(3);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  for (float& v : src) v = normal(rng);
  for (DType t : kFormats) {
    std::vector<uint8_t> out(256 * RowBytes(t, cols));
    const double s = BestOf(3, [&] {
      for (int64_t r = 0; r < 256; ++r) {
        QuantizeRow(t, &src[r * cols], &out[r * RowBytes(t, cols)], cols);
      }
    });
    std::printf("| %s | %.0f |\n", DTypeName(t).data(), 256.0 * cols / s / 1e6);
  }
  return 0;
}
