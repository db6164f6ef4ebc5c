// MatMul benchmark: the machine's read bandwidth, batch-1 decode matvec GB/s over a ~1.5 GB
// bf16 weight set (percent of the best read bandwidth measured), batched-decode and prefill
// GFLOP/s with float32 and with bfloat16 activations, beside the compute peak measured for the
// instruction each uses (fp32 FMA, vdpbf16ps), for every ISA the processor runs and 1 / all
// threads. Prints a table; --json PATH also writes the rows as JSON; --quick uses smaller
// buffers.
//
// Build: cmake --build build --target matmul_bench (build/bin/matmul_bench).
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "kernels/cpu/simd_intrinsics.h"
#include "kernels/cpu_context.h"
#include "kernels/dtype.h"
#include "kernels/matmul.h"
#include "kernels/weight_view.h"

namespace dsv2 {
namespace {

double Seconds(const std::function<void()>& fn) {
  const auto start = std::chrono::steady_clock::now();
  fn();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

double BestOf(int reps, const std::function<void()>& fn) {
  double best = 1e30;
  for (int i = 0; i < reps; ++i) best = std::min(best, Seconds(fn));
  return best;
}

// Finite bf16 values of magnitude ~[2^-8, 2), as a checkpoint would hold.
void FillBf16(std::vector<uint16_t>& v, uint64_t seed) {
  uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
  for (uint16_t& h : v) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    const uint32_t r = static_cast<uint32_t>(s >> 33);
    const uint32_t exp = 119 + (r % 8);  // 2^-8 .. 2^-1
    h = static_cast<uint16_t>(((r >> 8) & 0x8000u) | (exp << 7) | ((r >> 3) & 0x7fu));
  }
}

// Read bandwidth: sum of a `bytes` buffer split over the context's threads.
double ReadBandwidth(const CpuContext& ctx, const std::vector<uint64_t>& buf, int reps) {
  std::vector<uint64_t> partial(64 * 8, 0);  // one cache line per chunk slot
  const int64_t n = static_cast<int64_t>(buf.size());
  const double t = BestOf(reps, [&] {
    ctx.ParallelFor(n, n / ctx.num_threads(), [&](int64_t begin, int64_t end) {
      uint64_t a = 0, b = 0, c = 0, d = 0;
      for (int64_t i = begin; i + 4 <= end; i += 4) {
        a += buf[i];
        b += buf[i + 1];
        c += buf[i + 2];
        d += buf[i + 3];
      }
      partial[(begin * 8 / n) * 8] += a + b + c + d;
    });
  });
  uint64_t total = 0;
  for (uint64_t p : partial) total += p;
  if (total == 42) std::printf(" ");  // keep the sum alive
  return static_cast<double>(buf.size() * sizeof(uint64_t)) / t / 1e9;
}

// The compute peak of one instruction: 12 independent accumulator chains (enough to cover the
// latency), `iters` rounds, on every thread of the context. FLOPs per instruction: 2 per fp32
// lane for an FMA, 4 per fp32 lane for vdpbf16ps (two products and two adds).
__attribute__((target("avx512f,fma"))) double PeakFma512(int64_t iters) {
  __m512 acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = _mm512_set1_ps(0.001f * i);
  const __m512 a = _mm512_set1_ps(0.999f), b = _mm512_set1_ps(0.0001f);
  for (int64_t it = 0; it < iters; ++it)
    for (int i = 0; i < 12; ++i) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
  float sink = 0;
  for (int i = 0; i < 12; ++i) sink += _mm512_reduce_add_ps(acc[i]);
  return sink;
}
__attribute__((target("avx2,fma"))) double PeakFma256(int64_t iters) {
  __m256 acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = _mm256_set1_ps(0.001f * i);
  const __m256 a = _mm256_set1_ps(0.999f), b = _mm256_set1_ps(0.0001f);
  for (int64_t it = 0; it < iters; ++it)
    for (int i = 0; i < 12; ++i) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
  alignas(32) float lanes[8];
  float sink = 0;
  for (int i = 0; i < 12; ++i) {
    _mm256_store_ps(lanes, acc[i]);
    sink += lanes[0];
  }
  return sink;
}
__attribute__((target("avx512f,avx512bf16"))) double PeakDpbf16(int64_t iters) {
  __m512 acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = _mm512_set1_ps(0.001f * i);
  const __m512bh a = reinterpret_cast<__m512bh>(_mm512_set1_epi16(0x3c00));
  const __m512bh b = reinterpret_cast<__m512bh>(_mm512_set1_epi16(0x3800));
  for (int64_t it = 0; it < iters; ++it)
    for (int i = 0; i < 12; ++i) acc[i] = _mm512_dpbf16_ps(acc[i], a, b);
  float sink = 0;
  for (int i = 0; i < 12; ++i) sink += _mm512_reduce_add_ps(acc[i]);
  return sink;
}

// GFLOP/s of `kernel` on every thread of `ctx` (flops_per_iter per thread per round).
double PeakGflops(const CpuContext& ctx, double (*kernel)(int64_t), double flops_per_iter) {
  constexpr int64_t kIters = 20'000'000;
  std::vector<double> sinks(ctx.num_threads() * 8, 0.0);
  const double t = BestOf(3, [&] {
    ctx.ParallelFor(ctx.num_threads(), 1, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) sinks[i * 8] += kernel(kIters);
    });
  });
  double sum = 0;
  for (double v : sinks) sum += v;
  if (sum == 42) std::printf(" ");  // keep the sums alive
  return flops_per_iter * kIters * ctx.num_threads() / t / 1e9;
}

struct Row {
  std::string what, isa;
  int threads;
  double value;
  std::string unit;
  double pct_of_bw;  // < 0: not a bandwidth row
};

void Print(const Row& r) {
  std::printf("%-44s %-10s %2d thr %9.2f %-8s", r.what.c_str(), r.isa.c_str(), r.threads, r.value,
              r.unit.c_str());
  if (r.pct_of_bw >= 0) std::printf(" %5.1f%% of read bw", r.pct_of_bw);
  std::printf("\n");
  std::fflush(stdout);
}

}  // namespace
}  // namespace dsv2

int main(int argc, char** argv) {
  using namespace dsv2;
  std::string json_path;
  bool quick = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--json") == 0 && i + 1 < argc) {
      json_path = argv[++i];
    } else if (std::strcmp(argv[i], "--quick") == 0) {
      quick = true;
    } else {
      const bool help = std::strcmp(argv[i], "--help") == 0 || std::strcmp(argv[i], "-h") == 0;
      if (!help) {
        std::fprintf(stderr, "matmul_bench: unknown argument %s (see matmul_bench --help)\n",
                     argv[i]);
        return 2;
      }
      std::fprintf(stdout,
                   "matmul_bench: the machine's read bandwidth, batch-1 decode matvec GB/s over a "
                   "~1.5 GB bf16\nweight set, batched-decode and prefill GFLOP/s with float32 and "
                   "bfloat16 activations beside\nthe measured peak of fp32 FMA and vdpbf16ps, for "
                   "every ISA the processor runs and\n1 / all threads.\n\n"
                   "  matmul_bench [--quick] [--json PATH]\n\n"
                   "  --quick      smaller buffers (0.5 GB bandwidth buffer), a faster run\n"
                   "  --json PATH  also write the rows as JSON\n");
      return 0;
    }
  }
  const int hw = std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  std::vector<int> thread_counts = {1};
  if (hw > 1) thread_counts.push_back(hw);
  std::vector<CpuIsa> isas;
  for (CpuIsa isa : kAllCpuIsas)
    if (CpuSupports(isa)) isas.push_back(isa);
  std::vector<Row> rows;
  auto add = [&](Row r) {
    Print(r);
    rows.push_back(std::move(r));
  };

  // 1. Read bandwidth over a 2 GB buffer, measured before and after the matvecs (the best of
  //    both is the reference: on a shared host it moves from run to run).
  std::vector<uint64_t> buf((quick ? 512ull : 2048ull) << 17, 1);  // 2 GB (0.5 GB quick)
  const std::string bw_name = "read bandwidth (sum, " + std::to_string(buf.size() >> 17) + " MB)";
  double peak_bw = 0;
  auto measure_bw = [&](const char* when) {
    for (int th : thread_counts) {
      const CpuContext ctx(th, CpuIsa::kScalar);
      const double bw = ReadBandwidth(ctx, buf, 5);
      peak_bw = std::max(peak_bw, bw);
      add({bw_name + when, "-", th, bw, "GB/s", -1});
    }
  };
  measure_bw("");

  // 2. Decode matvec (n = 1) over a bf16 weight set: an lm_head and dense-MLP-shaped pairs.
  struct Mat {
    int64_t rows, cols;
    std::vector<uint16_t> data;
  };
  std::vector<Mat> mats;
  mats.push_back({102400, 2048, {}});
  for (int i = 0; i < (quick ? 4 : 12); ++i) {
    mats.push_back({10944, 2048, {}});
    mats.push_back({2048, 10944, {}});
  }
  double total_bytes = 0;
  int64_t max_dim = 0;
  for (size_t i = 0; i < mats.size(); ++i) {
    mats[i].data.resize(mats[i].rows * mats[i].cols);
    FillBf16(mats[i].data, i + 1);
    total_bytes += 2.0 * mats[i].data.size();
    max_dim = std::max({max_dim, mats[i].rows, mats[i].cols});
  }
  std::vector<float> x(max_dim, 0.01f), y(max_dim, 0.0f);
  std::vector<Row> matvec_rows;  // printed once the reference bandwidth is final
  const std::string set_name =
      "matvec n=1, bf16 " + std::to_string(static_cast<int>(total_bytes / 1e6)) + " MB";
  for (CpuIsa isa : isas) {
    for (int th : thread_counts) {
      const CpuContext ctx(th, isa);
      auto pass = [&] {
        for (const Mat& m : mats) {
          const WeightView w{m.data.data(), DType::kBF16, m.rows, m.cols, m.cols};
          MatMul(ctx, MatMulArgs{x.data(), m.cols, 1, w, y.data(), m.rows, false});
        }
      };
      pass();  // warm-up (page faults already taken by the fill)
      const double gbs = total_bytes / BestOf(isa == CpuIsa::kScalar ? 1 : 3, pass) / 1e9;
      matvec_rows.push_back({set_name, CpuIsaName(isa), th, gbs, "GB/s", 0});
    }
  }
  mats.clear();
  measure_bw(" again");
  buf.clear();
  buf.shrink_to_fit();
  for (Row& r : matvec_rows) {
    r.pct_of_bw = 100.0 * r.value / peak_bw;
    add(r);
  }

  // 3. The compute peaks of the instructions the kernels use.
  for (int th : thread_counts) {
    const CpuContext ctx(th, CpuIsa::kScalar);
    if (CpuSupports(CpuIsa::kAvx2)) {
      add({"peak: fp32 FMA, 8 lanes", "avx2", th, PeakGflops(ctx, PeakFma256, 12 * 16), "GFLOP/s",
           -1});
    }
    if (CpuSupports(CpuIsa::kAvx512)) {
      add({"peak: fp32 FMA, 16 lanes", "avx512", th, PeakGflops(ctx, PeakFma512, 12 * 32),
           "GFLOP/s", -1});
    }
    if (CpuSupports(CpuIsa::kAvx512Bf16)) {
      add({"peak: vdpbf16ps, 16 lanes", "avx512bf16", th, PeakGflops(ctx, PeakDpbf16, 12 * 64),
           "GFLOP/s", -1});
    }
  }

  // 4. Batched decode and prefill on [2048, 2048] bf16 weights, with float32 activations and
  //    with bfloat16 activations (the CPU's --dtype bfloat16).
  const int64_t dim = 2048;
  std::vector<uint16_t> wsq(dim * dim);
  FillBf16(wsq, 77);
  const WeightView w{wsq.data(), DType::kBF16, dim, dim, dim};
  for (DType act : {DType::kF32, DType::kBF16}) {
    for (int64_t n : {int64_t{1}, int64_t{4}, int64_t{16}, int64_t{512}}) {
      std::vector<float> xs(n * dim, 0.01f), ys(n * dim, 0.0f);
      std::vector<uint16_t> xs16(n * dim, FloatToBf16(0.01f)), ys16(n * dim, 0);
      void* x_act = act == DType::kF32 ? static_cast<void*>(xs.data()) : xs16.data();
      void* y_act = act == DType::kF32 ? static_cast<void*>(ys.data()) : ys16.data();
      for (CpuIsa isa : isas) {
        if (isa == CpuIsa::kScalar && n == 512) continue;  // minutes; adds nothing
        for (int th : thread_counts) {
          const CpuContext ctx(th, isa, act);
          auto run = [&] { MatMul(ctx, MatMulArgs{x_act, dim, n, w, y_act, dim, false}); };
          run();
          const double t = BestOf(n == 512 ? 3 : 20, run);
          add({"matmul n=" + std::to_string(n) + " [2048,2048] bf16 W, " + PrecisionName(act) +
                   " x",
               CpuIsaName(isa), th, 2.0 * n * dim * dim / t / 1e9, "GFLOP/s", -1});
        }
      }
    }
  }

  if (!json_path.empty()) {
    FILE* f = std::fopen(json_path.c_str(), "w");
    if (f == nullptr) {
      std::fprintf(stderr, "cannot write %s\n", json_path.c_str());
      return 1;
    }
    std::fprintf(f, "[\n");
    for (size_t i = 0; i < rows.size(); ++i) {
      const Row& r = rows[i];
      std::fprintf(f,
                   "  {\"what\": \"%s\", \"isa\": \"%s\", \"threads\": %d, \"value\": %.3f, "
                   "\"unit\": \"%s\"}%s\n",
                   r.what.c_str(), r.isa.c_str(), r.threads, r.value, r.unit.c_str(),
                   i + 1 < rows.size() ? "," : "");
    }
    std::fprintf(f, "]\n");
    std::fclose(f);
  }
  return 0;
}
