// The MoE router after its gate GEMM (REFERENCE.md §4): per token, softmax over the routed
// experts' logits (float32), top-k selection — greedy, or group-limited (a group's score is its
// best expert's; only the topk_group best groups compete) — then the selected weights are
// renormalised (top_k > 1 and norm_topk_prob) or else scaled by routed_scaling_factor.
// Ranking as torch.topk: larger first, NaN largest, ties to the lower index.
// The per-token rule is one DSV2_HD function, RouteOneToken, run by both twins.
#pragma once

#include <cmath>
#include <cstdint>

#include "kernels/exec_context.h"
#include "kernels/host_device.h"

namespace dsv2 {

inline constexpr int kMaxRoutedExperts = 256;
inline constexpr int kMaxRouterTopK = 16;

struct RouterRule {
  int32_t n_experts = 0;  // <= kMaxRoutedExperts
  int32_t top_k = 0;      // <= kMaxRouterTopK
  bool group_limited = false;
  int32_t n_group = 1;
  int32_t topk_group = 1;
  bool norm_topk_prob = false;
  float routed_scaling_factor = 1.0f;
};

struct RouterTopKArgs {
  const float* logits = nullptr;  // [n_tokens, n_experts] float32
  int64_t n_tokens = 0;
  RouterRule rule;
  int32_t* expert = nullptr;  // [n_tokens, top_k]: expert ids, best first
  float* weight = nullptr;    // [n_tokens, top_k]
};

// Whether value a at index ia ranks before value b at index ib.
DSV2_HD bool RouterRanksBefore(float a, int32_t ia, float b, int32_t ib) {
  const bool a_nan = a != a, b_nan = b != b;
  if (a_nan || b_nan) return a_nan && (!b_nan || ia < ib);
  return a > b || (a == b && ia < ib);
}

// Keeps the k best of values[0..n) in out (sorted, best first): insertion, O(n·k).
DSV2_HD void RouterTopKOf(const float* values, int32_t n, int32_t k, int32_t* out_index,
                          float* out_value) {
  int32_t size = 0;
  for (int32_t i = 0; i < n; ++i) {
    const float v = values[i];
    if (size == k && !RouterRanksBefore(v, i, out_value[k - 1], out_index[k - 1])) continue;
    int32_t pos = size < k ? size++ : k - 1;
    for (; pos > 0 && RouterRanksBefore(v, i, out_value[pos - 1], out_index[pos - 1]); --pos) {
      out_value[pos] = out_value[pos - 1];
      out_index[pos] = out_index[pos - 1];
    }
    out_value[pos] = v;
    out_index[pos] = i;
  }
}

// One token: logits [n_experts] → ids/weights [top_k]. `scores` is scratch [n_experts].
DSV2_HD void RouteOneToken(const RouterRule& r, const float* logits, float* scores, int32_t* ids,
                           float* w) {
  float max_v = logits[0];
  for (int32_t i = 1; i < r.n_experts; ++i) max_v = fmaxf(max_v, logits[i]);
  float sum = 0.0f;
  for (int32_t i = 0; i < r.n_experts; ++i) {
    scores[i] = expf(logits[i] - max_v);
    sum += scores[i];
  }
  const float inv_sum = 1.0f / sum;
  for (int32_t i = 0; i < r.n_experts; ++i) scores[i] *= inv_sum;
  if (r.group_limited) {
    // A group's score is its best expert's; experts of the other groups drop to 0.
    const int32_t per_group = r.n_experts / r.n_group;
    float group_score[kMaxRoutedExperts];
    int32_t group_index[kMaxRoutedExperts];
    for (int32_t g = 0; g < r.n_group; ++g) {
      float best = scores[g * per_group];
      for (int32_t i = 1; i < per_group; ++i) {
        if (scores[g * per_group + i] > best) best = scores[g * per_group + i];
      }
      group_score[g] = best;
    }
    RouterTopKOf(group_score, r.n_group, r.topk_group, group_index, group_score);
    for (int32_t g = 0; g < r.n_group; ++g) {
      bool kept = false;
      for (int32_t i = 0; i < r.topk_group; ++i) kept = kept || group_index[i] == g;
      if (!kept) {
        for (int32_t i = 0; i < per_group; ++i) scores[g * per_group + i] = 0.0f;
      }
    }
  }
  RouterTopKOf(scores, r.n_experts, r.top_k, ids, w);
  if (r.top_k > 1 && r.norm_topk_prob) {
    float s = 0.0f;
    for (int32_t i = 0; i < r.top_k; ++i) s += w[i];
    for (int32_t i = 0; i < r.top_k; ++i) w[i] /= (s + 1e-20f);
  } else {
    for (int32_t i = 0; i < r.top_k; ++i) w[i] *= r.routed_scaling_factor;
  }
}

// The checks both twins make before routing (a bad rule is a programmer error: configs are
// validated when loaded).
void CheckRouterTopKArgs(const RouterTopKArgs& args);

namespace cpu {
void RouterTopK(const CpuContext& ctx, const RouterTopKArgs& args);
}
namespace cuda {
void RouterTopK(CudaContext& ctx, const RouterTopKArgs& args);
}

inline void RouterTopK(const ExecContext& ctx, const RouterTopKArgs& args) {
  if (ctx.on_cuda()) return cuda::RouterTopK(ctx.cuda(), args);
  cpu::RouterTopK(ctx.cpu(), args);
}

}  // namespace dsv2
