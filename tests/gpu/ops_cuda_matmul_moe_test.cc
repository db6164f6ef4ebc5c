// CUDA parity of the GEMM-shaped ops: MatMul (plain, accumulating, float32 output, batched),
// RouterTopK and RoutedExperts. Weights on the device are in the activation dtype, as the
// upload stores them; the CPU twin reads the very same bytes through a host WeightView.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "kernels/dtype.h"
#include "kernels/exec_context.h"
#include "kernels/matmul.h"
#include "kernels/mlp_weights.h"
#include "kernels/routed_experts.h"
#include "kernels/router_topk.h"
#include "kernels/weight_view.h"
#include "tests/gpu/cuda_test_util.h"

namespace dsv2 {
namespace {

using cuda_test::Decode;
using cuda_test::DeviceScratch;
using cuda_test::Encode;
using cuda_test::ExpectAllClose;
using cuda_test::ExpectAllEqual;
using cuda_test::kBf16Tol;
using cuda_test::kF32LongSumTol;
using cuda_test::kF32Tol;
using cuda_test::NanVector;
using cuda_test::RandomFloats;
using cuda_test::RoundTo;

class CudaMatMulMoeTest : public cuda_test::CudaOpTest {};

// Elements spanned by `batch` operands of `n` rows of `width`, strides in elements.
int64_t Extent(int64_t batch, int64_t batch_stride, int64_t n, int64_t stride, int64_t width) {
  return (batch - 1) * batch_stride + (n - 1) * stride + width;
}

// Decode and prefill token counts, odd shapes, padded strides, batch 3 with the per-head layout
// of the absorbed attention (x and y interleaved by head, W stacked), both output dtypes.
// float32 tolerance 1e-4: up to 576 products are summed in cuBLAS's order, not the CPU's.
TEST_P(CudaMatMulMoeTest, MatMul) {
#if defined(DSV2_CUDA_EMULATION)
  GTEST_SKIP() << "MatMul is a cuBLAS call, which the CUDA emulation does not run";
#endif
  std::mt19937 rng(505);
  const ExecContext on_cpu(cpu());
  const ExecContext on_gpu(cuda());
  struct Dims {
    int64_t rows, cols, w_pad;
  };
  for (const Dims& d : {Dims{1, 7, 0}, Dims{13, 33, 2}, Dims{67, 100, 0}, Dims{33, 576, 3}}) {
    for (int64_t n : {1, 3, 17}) {
      for (int64_t batch : {1, 3}) {
        for (int flags = 0; flags < 4; ++flags) {
          const bool accumulate = (flags & 1) != 0, y_float32 = (flags & 2) != 0;
          SCOPED_TRACE("rows=" + std::to_string(d.rows) + " cols=" + std::to_string(d.cols) +
                       " n=" + std::to_string(n) + " batch=" + std::to_string(batch) +
                       " accumulate=" + std::to_string(accumulate) +
                       " y_float32=" + std::to_string(y_float32));
          const DType y_dtype = y_float32 ? DType::kF32 : act();
          const int64_t w_row_stride = d.cols + d.w_pad;
          const int64_t w_bs = d.rows * w_row_stride + 8;
          const int64_t x_bs = d.cols + 1, x_stride = batch * x_bs + 2;
          const int64_t y_bs = d.rows + 2, y_stride = batch * y_bs + 1;
          const int64_t x_elems = Extent(batch, x_bs, n, x_stride, d.cols);
          const int64_t y_elems = Extent(batch, y_bs, n, y_stride, d.rows);
          const int64_t w_elems = Extent(batch, w_bs, d.rows, w_row_stride, d.cols);

          const std::vector<float> x = Act(RandomFloats(x_elems, rng));
          const std::vector<uint8_t> w_bytes = Encode(act(), RandomFloats(w_elems, rng));
          const std::vector<float> y0 =
              accumulate ? RoundTo(y_dtype, RandomFloats(y_elems, rng, -3.0f, 3.0f))
                         : NanVector(y_elems);

          DeviceScratch dev(cuda());
          const void* d_x = dev.UploadAs(act(), x);
          const void* d_w = dev.UploadBytes(w_bytes.data(), static_cast<int64_t>(w_bytes.size()));
          void* d_y = dev.UploadAs(y_dtype, y0);  // NaN bytes when not accumulating: poisoned
          ASSERT_TRUE(dev.ok()) << dev.status();

          std::vector<float> y = y0;
          MatMulArgs a;
          a.x = x.data();
          a.x_stride = x_stride;
          a.n = n;
          a.w = WeightView{w_bytes.data(), act(), d.rows, d.cols, w_row_stride};
          a.y = y.data();
          a.y_stride = y_stride;
          a.accumulate = accumulate;
          a.y_float32 = y_float32;
          a.batch = batch;
          a.x_batch_stride = x_bs;
          a.w_batch_stride = w_bs;
          a.y_batch_stride = y_bs;
          MatMul(on_cpu, a);
          a.x = d_x;
          a.w.data = d_w;
          a.y = d_y;
          MatMul(on_gpu, a);

          const std::vector<float> got = dev.DownloadAs(y_dtype, d_y, y_elems);
          ASSERT_TRUE(dev.ok()) << dev.status();
          // A float32 y in a bf16 run is not rounded: only the summation order may differ.
          ExpectAllClose(got, y, y_dtype == DType::kBF16 ? kBf16Tol : kF32LongSumTol, "y");
        }
      }
    }
  }
}

// Greedy and group-limited routing, renormalised or scaled (factor != 1), top_k 1 to 8, up to
// the 256-expert limit. Logits lie on a 1/8 grid: many exact ties (broken towards the lower id
// on both twins) and otherwise gaps far wider than an ulp, so the ids must match exactly. One
// token has a NaN logit: NaN ranks largest, and its weights must be NaN on both twins.
TEST_P(CudaMatMulMoeTest, RouterTopK) {
  std::mt19937 rng(606);
  const ExecContext on_cpu(cpu());
  const ExecContext on_gpu(cuda());
  auto rule = [](int32_t experts, int32_t k, bool grouped, int32_t groups, int32_t keep, bool norm,
                 float scale) {
    RouterRule r;
    r.n_experts = experts;
    r.top_k = k;
    r.group_limited = grouped;
    r.n_group = groups;
    r.topk_group = keep;
    r.norm_topk_prob = norm;
    r.routed_scaling_factor = scale;
    return r;
  };
  const std::vector<RouterRule> rules = {
      rule(64, 6, false, 1, 1, false, 2.5f),   // DeepSeek-V2-Lite, scaled
      rule(64, 6, false, 1, 1, true, 2.5f),    // renormalised (the factor is ignored)
      rule(160, 6, true, 8, 3, false, 16.0f),  // DeepSeek-V2
      rule(160, 6, true, 8, 3, true, 16.0f),
      rule(7, 1, false, 1, 1, true, 2.5f),  // top_k 1: scaled even with norm_topk_prob
      rule(3, 2, false, 1, 1, false, 0.5f),
      rule(256, 8, true, 8, 4, true, 2.5f),  // the limits
  };
  std::uniform_int_distribution<int> grid(-32, 32);
  for (const RouterRule& r : rules) {
    for (int64_t n : {1, 3, 17}) {
      SCOPED_TRACE("experts=" + std::to_string(r.n_experts) + " top_k=" + std::to_string(r.top_k) +
                   " grouped=" + std::to_string(r.group_limited) +
                   " norm=" + std::to_string(r.norm_topk_prob) + " n=" + std::to_string(n));
      std::vector<float> logits(n * r.n_experts);
      for (float& l : logits) l = static_cast<float>(grid(rng)) / 8.0f;
      if (n > 2) logits[2 * r.n_experts + r.n_experts / 2] = std::nanf("");

      DeviceScratch dev(cuda());
      const float* d_logits = dev.Upload(logits);
      int32_t* d_expert =
          static_cast<int32_t*>(dev.Poisoned(n * r.top_k * static_cast<int64_t>(sizeof(int32_t))));
      float* d_weight =
          static_cast<float*>(dev.Poisoned(n * r.top_k * static_cast<int64_t>(sizeof(float))));
      ASSERT_TRUE(dev.ok()) << dev.status();

      std::vector<int32_t> expert(n * r.top_k, -1);
      std::vector<float> weight = NanVector(n * r.top_k);
      RouterTopKArgs a{logits.data(), n, r, expert.data(), weight.data()};
      RouterTopK(on_cpu, a);
      a.logits = d_logits;
      a.expert = d_expert;
      a.weight = d_weight;
      RouterTopK(on_gpu, a);

      const std::vector<int32_t> got_expert = dev.Download(d_expert, n * r.top_k);
      const std::vector<float> got_weight = dev.Download(d_weight, n * r.top_k);
      ASSERT_TRUE(dev.ok()) << dev.status();
      ExpectAllEqual(got_expert, expert, "expert ids");
      ExpectAllClose(got_weight, weight, kF32Tol, "weight");  // float32 in every run
    }
  }
}

// One routed-experts layout: n_local experts hosted from global id expert_begin, of n_total.
struct MoeCase {
  int64_t n_local, expert_begin, n_total, top_k, n_tokens, hidden, width;
};

// Experts evenly spaced (with a gap) on the device as the contract requires; uneven tokens per
// expert, a local expert no token picks, a token whose slots are all -1 or outside the hosted
// range, a token with one -1 slot; accumulate both ways. Weights are scaled by 1/sqrt(fan_in)
// so that every intermediate is O(1) and the bf16 tolerance means what it says. float32
// tolerance 1e-4: two chained GEMMs whose sums the GPU orders its own way.
TEST_P(CudaMatMulMoeTest, RoutedExperts) {
  std::mt19937 rng(707);
  const ExecContext on_cpu(cpu());
  const ExecContext on_gpu(cuda());
  const std::vector<MoeCase> cases = {
      {1, 0, 1, 1, 3, 33, 20}, {3, 2, 8, 2, 17, 33, 37},  {8, 4, 16, 6, 17, 100, 37},
      {8, 0, 8, 6, 1, 33, 20}, {3, 0, 64, 6, 17, 33, 20}, {8, 0, 8, 6, 3, 576, 64},
  };
  for (const MoeCase& c : cases) {
    for (bool accumulate : {false, true}) {
      SCOPED_TRACE("n_local=" + std::to_string(c.n_local) +
                   " begin=" + std::to_string(c.expert_begin) +
                   " n_total=" + std::to_string(c.n_total) + " top_k=" + std::to_string(c.top_k) +
                   " tokens=" + std::to_string(c.n_tokens) + " hidden=" + std::to_string(c.hidden) +
                   " accumulate=" + std::to_string(accumulate));
      const int64_t end = c.expert_begin + c.n_local;
      // Routing: distinct ids per token, never the idle expert (when there are 3 or more).
      const int64_t idle = c.n_local >= 3 ? end - 2 : -1;
      std::vector<int32_t> pool;
      for (int32_t e = 0; e < c.n_total; ++e) {
        if (e != idle) pool.push_back(e);
      }
      ASSERT_GE(static_cast<int64_t>(pool.size()), c.top_k);
      std::vector<int32_t> ids(c.n_tokens * c.top_k);
      for (int64_t t = 0; t < c.n_tokens; ++t) {
        std::shuffle(pool.begin(), pool.end(), rng);
        std::copy_n(pool.begin(), c.top_k, ids.begin() + t * c.top_k);
      }
      if (c.n_tokens > 1) {  // token 1 has no local expert
        for (int64_t s = 0; s < c.top_k; ++s) {
          ids[c.top_k + s] = s % 2 == 0 ? -1 : static_cast<int32_t>(end + s);
        }
      }
      if (c.n_tokens > 2) ids[3 * c.top_k - 1] = -1;
      const std::vector<float> route_w = RandomFloats(c.n_tokens * c.top_k, rng, 0.05f, 1.0f);

      // gate and up [width, hidden], down [hidden, width]; each kind one buffer, experts
      // `stride` elements apart.
      const int64_t up_elems = c.width * c.hidden, stride = up_elems + 64;
      auto weights = [&](float scale) {
        std::vector<float> w = RandomFloats(c.n_local * stride, rng, -scale, scale);
        return Encode(act(), w);
      };
      const float in_scale = 1.0f / std::sqrt(static_cast<float>(c.hidden));
      const float down_scale = 1.0f / std::sqrt(static_cast<float>(c.width));
      const std::vector<uint8_t> gate = weights(in_scale), up = weights(in_scale);
      const std::vector<uint8_t> down = weights(down_scale);
      const std::vector<float> x = Act(RandomFloats(c.n_tokens * c.hidden, rng, -2.0f, 2.0f));
      const int64_t out_elems = c.n_tokens * c.hidden;
      const std::vector<float> out0 =
          accumulate ? Act(RandomFloats(out_elems, rng)) : NanVector(out_elems);

      DeviceScratch dev(cuda());
      const auto upload = [&](const std::vector<uint8_t>& b) {
        return static_cast<const uint8_t*>(
            dev.UploadBytes(b.data(), static_cast<int64_t>(b.size())));
      };
      const uint8_t* d_gate = upload(gate);
      const uint8_t* d_up = upload(up);
      const uint8_t* d_down = upload(down);
      const int32_t* d_ids = dev.Upload(ids);
      const float* d_route_w = dev.Upload(route_w);
      const void* d_x = dev.UploadAs(act(), x);
      void* d_out = dev.UploadAs(act(), out0);
      void* d_out2 = accumulate ? nullptr : dev.UploadAs(act(), out0);
      ASSERT_TRUE(dev.ok()) << dev.status();

      const int64_t esize = DTypeSize(act());
      auto views = [&](const uint8_t* g, const uint8_t* u, const uint8_t* dn) {
        std::vector<MlpWeights> v(c.n_local);
        for (int64_t e = 0; e < c.n_local; ++e) {
          const int64_t off = e * stride * esize;
          v[e].gate = WeightView{g + off, act(), c.width, c.hidden, c.hidden};
          v[e].up = WeightView{u + off, act(), c.width, c.hidden, c.hidden};
          v[e].down = WeightView{dn + off, act(), c.hidden, c.width, c.width};
        }
        return v;
      };
      const std::vector<MlpWeights> host_experts = views(gate.data(), up.data(), down.data());
      const std::vector<MlpWeights> dev_experts = views(d_gate, d_up, d_down);

      std::vector<float> out = out0;
      RoutedExpertsArgs a{
          host_experts.data(), c.n_local, c.expert_begin, ids.data(), route_w.data(),
          c.n_tokens,          c.top_k,   c.hidden,       x.data(),   out.data(),
          accumulate};
      RoutedExperts(on_cpu, a);
      a.experts = dev_experts.data();
      a.expert = d_ids;
      a.weight = d_route_w;
      a.x = d_x;
      a.out = d_out;
      RoutedExperts(on_gpu, a);
      if (!accumulate) {  // a fixed summation order: a second run is bit-identical
        a.out = d_out2;
        RoutedExperts(on_gpu, a);
      }

      const std::vector<uint8_t> got_bytes = dev.DownloadBytes(d_out, out_elems * esize);
      const std::vector<uint8_t> again =
          accumulate ? got_bytes : dev.DownloadBytes(d_out2, out_elems * esize);
      ASSERT_TRUE(dev.ok()) << dev.status();
      ExpectAllClose(Decode(act(), got_bytes), out, Tol(kF32LongSumTol), "out");
      EXPECT_TRUE(again == got_bytes) << "two identical calls gave different bits";
    }
  }
}

DSV2_CUDA_DTYPE_SUITE(CudaMatMulMoeTest);

}  // namespace
}  // namespace dsv2
