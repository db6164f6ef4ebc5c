#include "coordinator/model/quantize_weights.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "kernels/cpu_context.h"
#include "kernels/quant_blocks.h"

namespace dsv2 {

absl::StatusOr<QuantScheme> QuantScheme::Parse(const std::string& name) {
  QuantScheme s;
  const std::string lower = absl::AsciiStrToLower(name);
  if (lower.empty() || lower == "none") return s;
  if (lower == "q4_k_m") {
    s.base_ = DType::kQ4_K;
    s.mixed_ = true;
    return s;
  }
  if (ParseQuantType(lower.c_str(), &s.base_)) return s;
  return absl::InvalidArgumentError(
      absl::StrCat("--quantize: '", name,
                   "' is not one of none, q8_0, q4_k_m, q4_k, q5_k, q6_k, q4_0, q5_0, iq4_nl"));
}

std::string QuantScheme::name() const {
  if (!enabled()) return "none";
  if (mixed_) return "q4_k_m";
  return absl::AsciiStrToLower(std::string(DTypeName(base_)));
}

DType QuantScheme::For(int64_t cols, bool down, bool lm_head, int64_t layer, int64_t layers) const {
  DType t = base_;
  if (mixed_) {
    const int64_t eighth = layers / 8;
    const bool more_bits = layer < eighth || layer >= layers - eighth || (layer - eighth) % 3 == 2;
    if (lm_head || (down && more_bits)) t = DType::kQ6_K;
  }
  if (cols % BlockElements(t) != 0) {
    t = t == DType::kQ6_K ? DType::kQ8_0 : DType::kQ5_0;
  }
  return t;
}

namespace {

struct Job {
  WeightView* view;
  DType to;
  uint8_t* out;
};

}  // namespace

absl::StatusOr<QuantizedBytes> QuantizeModelWeights(const ModelConfig& c, const QuantScheme& scheme,
                                                    int threads, ModelWeights& w) {
  if (!scheme.enabled()) return QuantizedBytes{};
  const int64_t layers = c.num_hidden_layers;
  std::vector<Job> jobs;
  auto add = [&](WeightView& v, bool down, bool lm_head, int64_t layer) -> absl::Status {
    if (v.data == nullptr || v.rows == 0) return absl::OkStatus();
    if (v.quantized()) return absl::OkStatus();  // already in a block format
    const DType to = scheme.For(v.cols, down, lm_head, layer, layers);
    if (v.cols % BlockElements(to) != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--quantize ", scheme.name(), ": a [", v.rows, ", ", v.cols,
          "] weight's rows are not whole blocks of 32 elements; this checkpoint cannot be "
          "quantized"));
    }
    jobs.push_back({&v, to, nullptr});
    return absl::OkStatus();
  };
  auto add_mlp = [&](MlpWeights& m, int64_t layer) -> absl::Status {
    DSV2_RETURN_IF_ERROR(add(m.gate, false, false, layer));
    DSV2_RETURN_IF_ERROR(add(m.up, false, false, layer));
    return add(m.down, true, false, layer);
  };
  for (int64_t l = 0; l < layers; ++l) {
    LayerWeights& L = w.layers[l];
    for (WeightView* v :
         {&L.attn.q_proj, &L.attn.q_a_proj, &L.attn.q_b_proj, &L.attn.kv_a_proj, &L.attn.o_proj}) {
      DSV2_RETURN_IF_ERROR(add(*v, false, false, l));
    }
    if (!L.is_moe) {
      DSV2_RETURN_IF_ERROR(add_mlp(L.mlp, l));
      continue;
    }
    for (MlpWeights& e : L.moe.experts) DSV2_RETURN_IF_ERROR(add_mlp(e, l));
    if (L.moe.has_shared) DSV2_RETURN_IF_ERROR(add_mlp(L.moe.shared, l));
  }
  DSV2_RETURN_IF_ERROR(add(w.lm_head, false, true, layers - 1));

  // Storage for every result, then units of ~256 rows claimed by the threads.
  int64_t in_bytes = 0, out_bytes = 0;
  struct Unit {
    size_t job;
    int64_t r0, r1;
  };
  std::vector<Unit> units;
  for (size_t j = 0; j < jobs.size(); ++j) {
    const WeightView& v = *jobs[j].view;
    const int64_t bytes = v.rows * RowBytes(jobs[j].to, v.cols);
    jobs[j].out = w.host_storage.emplace_back(bytes).data();
    in_bytes += v.bytes();
    out_bytes += bytes;
    for (int64_t r = 0; r < v.rows; r += 256) units.push_back({j, r, std::min(v.rows, r + 256)});
  }
  const auto start = std::chrono::steady_clock::now();
  std::mutex mu;
  auto last = start;
  std::atomic<int64_t> done{0};
  CpuContext pool(threads);
  std::fprintf(stderr, "dsv2: quantizing %zu weights (%.2f GB) to %s on %d threads\n", jobs.size(),
               in_bytes / 1e9, scheme.name().c_str(), pool.num_threads());
  pool.ParallelForChunks(static_cast<int64_t>(units.size()), 1, [&](int64_t b, int64_t e) {
    std::vector<float> row;
    for (int64_t u = b; u < e; ++u) {
      const Job& job = jobs[units[u].job];
      const WeightView& v = *job.view;
      row.resize(v.cols);
      const int64_t out_row = RowBytes(job.to, v.cols);
      for (int64_t r = units[u].r0; r < units[u].r1; ++r) {
        DequantizeRow(v.dtype, v.RowPtr(r), row.data(), v.cols);
        QuantizeRow(job.to, row.data(), job.out + r * out_row, v.cols);
      }
      const int64_t now_done = done += (units[u].r1 - units[u].r0) * RowBytes(v.dtype, v.cols);
      const auto now = std::chrono::steady_clock::now();
      std::lock_guard<std::mutex> lock(mu);
      if (now - last >= std::chrono::seconds(2)) {
        last = now;
        std::fprintf(stderr, "dsv2: quantizing: %.2f / %.2f GB (%.0f%%), %.1f s\n", now_done / 1e9,
                     in_bytes / 1e9, 100.0 * now_done / in_bytes,
                     std::chrono::duration<double>(now - start).count());
      }
    }
  });
  for (const Job& job : jobs) {
    WeightView& v = *job.view;
    v = {.data = job.out, .dtype = job.to, .rows = v.rows, .cols = v.cols, .row_stride = v.cols};
  }
  std::fprintf(stderr, "dsv2: quantized to %s: %.2f GB → %.2f GB in %.1f s\n",
               scheme.name().c_str(), in_bytes / 1e9, out_bytes / 1e9,
               std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  return QuantizedBytes{.before = in_bytes, .after = out_bytes};
}

}  // namespace dsv2
