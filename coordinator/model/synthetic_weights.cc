#include "coordinator/model/synthetic_weights.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>

#include "common/status_macros.h"
#include "kernels/fill_random.h"
#include "kernels/quant_blocks.h"

namespace dsv2 {
namespace {

// Where a matrix sits, for a --quantize scheme's choice of format.
struct Role {
  bool quantize = false;  // a matrix the scheme covers
  bool down = false;      // a down projection
  bool lm_head = false;
  int64_t layer = 0;
};

class SyntheticFiller {
 public:
  SyntheticFiller(const ExecContext& ctx, ModelWeights& w, uint64_t seed, const QuantScheme& scheme,
                  int64_t layers)
      : ctx_(ctx), w_(w), seed_(seed), scheme_(scheme), layers_(layers) {}

  // `count` matrices [rows, cols] in one allocation, evenly spaced (the routed experts' layout).
  absl::StatusOr<std::vector<WeightView>> Matrices(int64_t count, int64_t rows, int64_t cols,
                                                   Role role = {}) {
    if (role.quantize && scheme_.enabled()) return Quantized(count, rows, cols, role);
    const DType dt = ctx_.act_dtype();
    const int64_t each = rows * cols;
    DSV2_ASSIGN_OR_RETURN(DeviceBuffer b,
                          DeviceBuffer::Allocate(ctx_.device(), count * each * DTypeSize(dt)));
    FillRandom(ctx_, {.out = b.data(),
                      .dtype = dt,
                      .n = count * each,
                      .scale = 1.0f / std::sqrt(static_cast<float>(cols)),
                      .seed = seed_++});
    return Keep(std::move(b), count, rows, cols, dt);
  }
  absl::StatusOr<WeightView> Matrix(int64_t rows, int64_t cols, Role role = {}) {
    DSV2_ASSIGN_OR_RETURN(std::vector<WeightView> v, Matrices(1, rows, cols, role));
    return v[0];
  }
  absl::StatusOr<MlpWeights> Mlp(int64_t width, int64_t hidden, int64_t layer) {
    MlpWeights m;
    DSV2_ASSIGN_OR_RETURN(m.gate, Matrix(width, hidden, {.quantize = true, .layer = layer}));
    DSV2_ASSIGN_OR_RETURN(m.up, Matrix(width, hidden, {.quantize = true, .layer = layer}));
    DSV2_ASSIGN_OR_RETURN(m.down,
                          Matrix(hidden, width, {.quantize = true, .down = true, .layer = layer}));
    return m;
  }
  // A float32 norm scale near 1.
  absl::StatusOr<const float*> Norm(int64_t n) {
    DSV2_ASSIGN_OR_RETURN(DeviceBuffer b, DeviceBuffer::Allocate(ctx_.device(), n * 4));
    FillRandom(ctx_, {.out = b.data(),
                      .dtype = DType::kF32,
                      .n = n,
                      .scale = 0.1f,
                      .offset = 1.0f,
                      .seed = seed_++});
    const float* p = b.as<float>();
    w_.device_storage.push_back(std::move(b));
    return p;
  }
  int64_t bytes() const { return bytes_; }

 private:
  // Random float32 rows, 1024 at a time, quantized straight into the scheme's format (the
  // float model is never held: V2-Lite in Q4_K_M fits where its 31 GB of bf16 would not).
  absl::StatusOr<std::vector<WeightView>> Quantized(int64_t count, int64_t rows, int64_t cols,
                                                    Role role) {
    const DType t = scheme_.For(cols, role.down, role.lm_head, role.layer, layers_);
    const int64_t row_bytes = RowBytes(t, cols), total_rows = count * rows;
    DSV2_ASSIGN_OR_RETURN(DeviceBuffer b,
                          DeviceBuffer::Allocate(Device::kCpu, total_rows * row_bytes));
    constexpr int64_t kChunk = 1024;
    std::vector<float> values(std::min(kChunk, total_rows) * cols);
    for (int64_t r0 = 0; r0 < total_rows; r0 += kChunk) {
      const int64_t n = std::min(kChunk, total_rows - r0);
      FillRandom(ctx_, {.out = values.data(),
                        .dtype = DType::kF32,
                        .n = n * cols,
                        .scale = 1.0f / std::sqrt(static_cast<float>(cols)),
                        .seed = seed_++});
      ctx_.cpu().ParallelFor(n, 16, [&](int64_t begin, int64_t end) {
        for (int64_t r = begin; r < end; ++r) {
          QuantizeRow(t, &values[r * cols], b.as<uint8_t>() + (r0 + r) * row_bytes, cols);
        }
      });
      quantized_ += n * cols;
      const auto now = std::chrono::steady_clock::now();
      if (now - last_ >= std::chrono::seconds(2)) {
        last_ = now;
        std::fprintf(stderr, "dsv2: synthetic weights: %.2f G parameters quantized to %s\n",
                     quantized_ / 1e9, scheme_.name().c_str());
      }
    }
    return Keep(std::move(b), count, rows, cols, t);
  }

  // `count` [rows, cols] matrices of dtype t laid one after another in b, which the weights keep.
  std::vector<WeightView> Keep(DeviceBuffer b, int64_t count, int64_t rows, int64_t cols, DType t) {
    std::vector<WeightView> views;
    for (int64_t i = 0; i < count; ++i) {
      views.push_back({.data = b.as<uint8_t>() + i * rows * RowBytes(t, cols),
                       .dtype = t,
                       .rows = rows,
                       .cols = cols,
                       .row_stride = cols});
    }
    bytes_ += b.bytes();
    w_.device_storage.push_back(std::move(b));
    return views;
  }

  const ExecContext& ctx_;
  ModelWeights& w_;
  uint64_t seed_;
  int64_t bytes_ = 0;
  const QuantScheme& scheme_;
  int64_t layers_;
  int64_t quantized_ = 0;
  std::chrono::steady_clock::time_point last_ = std::chrono::steady_clock::now();
};

}  // namespace

absl::StatusOr<ModelWeights> MakeSyntheticWeights(const ModelConfig& c, const ExecContext& ctx,
                                                  uint64_t seed, const QuantScheme& scheme) {
  if (scheme.enabled() && ctx.on_cuda()) {
    return absl::InvalidArgumentError(
        "--quantize with --synthetic builds the quantized weights on the CPU only");
  }
  ModelWeights w;
  SyntheticFiller f(ctx, w, seed, scheme, c.num_hidden_layers);
  const int64_t hidden = c.hidden_size, heads = c.num_attention_heads;
  const int64_t r = c.kv_lora_rank, nope = c.qk_nope_head_dim, v = c.v_head_dim;
  DSV2_ASSIGN_OR_RETURN(w.embed, f.Matrix(c.vocab_size, hidden));
  w.layers.resize(c.num_hidden_layers);
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    LayerWeights& L = w.layers[l];
    DSV2_ASSIGN_OR_RETURN(L.input_norm, f.Norm(hidden));
    DSV2_ASSIGN_OR_RETURN(L.post_attention_norm, f.Norm(hidden));
    AttentionWeights& a = L.attn;
    const Role q{.quantize = true, .layer = l};
    if (c.q_lora_rank) {
      DSV2_ASSIGN_OR_RETURN(a.q_a_proj, f.Matrix(*c.q_lora_rank, hidden, q));
      DSV2_ASSIGN_OR_RETURN(a.q_a_norm, f.Norm(*c.q_lora_rank));
      DSV2_ASSIGN_OR_RETURN(a.q_b_proj, f.Matrix(heads * c.qk_head_dim(), *c.q_lora_rank, q));
    } else {
      DSV2_ASSIGN_OR_RETURN(a.q_proj, f.Matrix(heads * c.qk_head_dim(), hidden, q));
    }
    DSV2_ASSIGN_OR_RETURN(a.kv_a_proj, f.Matrix(c.latent_cache_dim(), hidden, q));
    DSV2_ASSIGN_OR_RETURN(a.kv_a_norm, f.Norm(r));
    DSV2_ASSIGN_OR_RETURN(a.w_uv, f.Matrix(heads * v, r));
    DSV2_ASSIGN_OR_RETURN(a.w_uk_t, f.Matrix(heads * r, nope));
    DSV2_ASSIGN_OR_RETURN(a.o_proj, f.Matrix(hidden, heads * v, q));
    L.is_moe = c.IsMoeLayer(l);
    if (!L.is_moe) {
      DSV2_ASSIGN_OR_RETURN(L.mlp, f.Mlp(c.intermediate_size, hidden, l));
      continue;
    }
    MoeWeights& m = L.moe;
    DSV2_ASSIGN_OR_RETURN(m.router, f.Matrix(c.n_routed_experts, hidden));
    const int64_t e = c.n_routed_experts, width = c.moe_intermediate_size;
    DSV2_ASSIGN_OR_RETURN(const std::vector<WeightView> gate, f.Matrices(e, width, hidden, q));
    DSV2_ASSIGN_OR_RETURN(const std::vector<WeightView> up, f.Matrices(e, width, hidden, q));
    DSV2_ASSIGN_OR_RETURN(
        const std::vector<WeightView> down,
        f.Matrices(e, hidden, width, {.quantize = true, .down = true, .layer = l}));
    for (int64_t i = 0; i < e; ++i) m.experts.push_back({gate[i], up[i], down[i]});
    m.has_shared = c.n_shared_experts > 0;
    if (m.has_shared) {
      DSV2_ASSIGN_OR_RETURN(m.shared, f.Mlp(c.n_shared_experts * width, hidden, l));
    }
  }
  DSV2_ASSIGN_OR_RETURN(w.final_norm, f.Norm(hidden));
  DSV2_ASSIGN_OR_RETURN(
      w.lm_head, f.Matrix(c.vocab_size, hidden,
                          {.quantize = true, .lm_head = true, .layer = c.num_hidden_layers - 1}));
  std::fprintf(stderr, "dsv2: synthetic weights: %.2f GB created on %s\n", f.bytes() / 1e9,
               DeviceName(ctx.device()));
  return w;
}

}  // namespace dsv2
