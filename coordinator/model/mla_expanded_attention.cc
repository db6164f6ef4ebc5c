#include "coordinator/model/mla_expanded_attention.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "kernels/causal_softmax.h"
#include "kernels/cpu/act_types.h"
#include "kernels/matmul.h"
#include "kernels/quant_blocks.h"

namespace dsv2 {
namespace {

constexpr int64_t kMinQueries = 32;
constexpr int64_t kQueryBlock = 256;  // queries per score block: [256, L] float32 scores

// `rows` float32 rows written into `dst` in the activation dtype.
void StoreAct(DType act, const float* src, void* dst, int64_t count) {
  if (act == DType::kF32) {
    std::memcpy(dst, src, count * sizeof(float));
  } else {
    cpu::RoundToBf16(src, static_cast<cpu::Bf16*>(dst), count);
  }
}

WeightView ActView(DType act, const void* data, int64_t rows, int64_t cols, int64_t row_stride) {
  return {.data = data, .dtype = act, .rows = rows, .cols = cols, .row_stride = row_stride};
}

}  // namespace

std::vector<ExpandedSegment> ExpandedSegments(const ModelConfig& c, const TokenLayout& layout) {
  std::vector<ExpandedSegment> out;
  const double heads = static_cast<double>(c.num_attention_heads);
  const double r = static_cast<double>(c.kv_lora_rank), nope = c.qk_nope_head_dim;
  const double v = static_cast<double>(c.v_head_dim);
  const double saved_per_pair = heads * (2 * r - nope - v);
  const double expansion_per_row = heads * (nope + v) * r;
  // A layout whose tables live only on the device side (DecodeGraphs' padded decode buckets)
  // holds decode tokens: nothing to expand.
  const size_t n_tokens = static_cast<size_t>(layout.n_tokens);
  if (saved_per_pair <= 0 || layout.positions.size() != n_tokens ||
      layout.token_table.size() != n_tokens) {
    return out;
  }
  for (int64_t t = 0; t < layout.n_tokens;) {
    int64_t end = t + 1;
    while (end < layout.n_tokens && layout.token_table[end] == layout.token_table[t] &&
           layout.positions[end] == layout.positions[end - 1] + 1) {
      ++end;
    }
    const double n = static_cast<double>(end - t), cached = layout.positions[t];
    if (end - t >= kMinQueries &&
        n * (cached + (n + 1) / 2) * saved_per_pair > (cached + n) * expansion_per_row) {
      out.push_back({.first_token = t,
                     .n_tokens = end - t,
                     .first_position = layout.positions[t],
                     .table = layout.token_table[t]});
    }
    t = end;
  }
  return out;
}

void ExpandedAttention(const AttentionEnv& env, const ExpandedAttentionArgs& a) {
  const ExecContext& ctx = env.ctx;
  const CpuContext& cpu = ctx.cpu();
  const ModelConfig& c = env.config;
  const int64_t heads = c.num_attention_heads, nope = c.qk_nope_head_dim;
  const int64_t rope = c.qk_rope_head_dim, qk = c.qk_head_dim(), v_dim = c.v_head_dim;
  const int64_t r = c.kv_lora_rank, row_dim = c.latent_cache_dim();
  const DType act = ctx.act_dtype();
  const int64_t as = DTypeSize(act);
  const int64_t n = a.segment.n_tokens, first = a.segment.first_position;
  const int64_t len = first + n;  // rows of keys and values: the sequence up to the chunk's end
  WorkspaceScope scope(ctx.workspace());
  auto alloc = [&](int64_t count) { return static_cast<char*>(ctx.workspace().Alloc(act, count)); };

  // 1. The sequence's latent rows [len, r + rope] = [c_norm | rope(k_pe)], out of their pages.
  char* lat = alloc(len * row_dim);
  {
    const LatentCacheLayerView& cv = a.cache;
    const int32_t* pages = a.layout.block_tables.data() + a.segment.table * a.layout.max_pages;
    const char* base = static_cast<const char*>(cv.base);
    cpu.ParallelFor(len, 256, [&](int64_t b, int64_t e) {
      for (int64_t j = b; j < e; ++j) {
        const int64_t at = pages[j / cv.page_size] * cv.page_stride + (j % cv.page_size) * row_dim;
        std::memcpy(lat + j * row_dim * as, base + at * as, row_dim * as);
      }
    });
  }

  // 2. W_UK [heads·nope, r] (the weights hold W_UKᵀ per head) and W_UV [heads·v, r] in the
  // activation dtype: the operands of the two expansions below.
  char* w_uk = alloc(heads * nope * r);
  char* w_uv = alloc(heads * v_dim * r);
  cpu.ParallelFor(heads, 1, [&](int64_t b, int64_t e) {
    std::vector<float> row(std::max(nope, r)), t(nope * r);
    for (int64_t h = b; h < e; ++h) {
      for (int64_t i = 0; i < r; ++i) {  // row i of W_UKᵀ: column i of W_UK
        DequantizeRow(a.w.w_uk_t.dtype, a.w.w_uk_t.RowPtr(h * r + i), row.data(), nope);
        for (int64_t k = 0; k < nope; ++k) t[k * r + i] = row[k];
      }
      StoreAct(act, t.data(), w_uk + h * nope * r * as, nope * r);
      for (int64_t k = 0; k < v_dim; ++k) {
        DequantizeRow(a.w.w_uv.dtype, a.w.w_uv.RowPtr(h * v_dim + k), row.data(), r);
        StoreAct(act, row.data(), w_uv + (h * v_dim + k) * r * as, r);
      }
    }
  });

  // 3. Keys k_nope [len, heads·nope] = c · W_UKᵀ, and values transposed, vᵀ [heads·v, len] =
  // W_UV · cᵀ (the value GEMM's weight has the outputs as rows).
  char* k_nope = alloc(len * heads * nope);
  char* v_t = alloc(heads * v_dim * len);
  MatMul(ctx, {.x = lat,
               .x_stride = row_dim,
               .n = len,
               .w = ActView(act, w_uk, heads * nope, r, r),
               .y = k_nope,
               .y_stride = heads * nope});
  MatMul(ctx, {.x = w_uv,
               .x_stride = r,
               .n = heads * v_dim,
               .w = ActView(act, lat, len, r, row_dim),
               .y = v_t,
               .y_stride = len});

  // 4. Per head and block of queries: scores S = q_nope · k_nopeᵀ + q_pe · k_peᵀ in float32
  // over the keys the block's last query sees, the causal softmax, o = P · v.
  const int64_t block = std::min(n, kQueryBlock);
  float* scores = static_cast<float*>(ctx.workspace().Alloc(DType::kF32, block * len));
  char* p = alloc(block * len);
  const char* q = static_cast<const char*>(a.q);
  char* o = static_cast<char*>(a.o);
  const float scale = static_cast<float>(c.SoftmaxScale());
  for (int64_t h = 0; h < heads; ++h) {
    for (int64_t i0 = 0; i0 < n; i0 += block) {
      const int64_t rows = std::min(block, n - i0);
      const int64_t keys = first + i0 + rows;
      const char* q_h = q + (i0 * a.q_stride + h * qk) * as;
      MatMul(ctx, {.x = q_h,
                   .x_stride = a.q_stride,
                   .n = rows,
                   .w = ActView(act, k_nope + h * nope * as, keys, nope, heads * nope),
                   .y = scores,
                   .y_stride = keys,
                   .y_float32 = true});
      MatMul(ctx, {.x = q_h + nope * as,
                   .x_stride = a.q_stride,
                   .n = rows,
                   .w = ActView(act, lat + r * as, keys, rope, row_dim),
                   .y = scores,
                   .y_stride = keys,
                   .accumulate = true,
                   .y_float32 = true});
      cpu::CausalSoftmax(cpu, {.scores = scores,
                               .score_stride = keys,
                               .rows = rows,
                               .cols = keys,
                               .first_valid = first + i0 + 1,
                               .scale = scale,
                               .p = p,
                               .p_stride = keys});
      MatMul(ctx, {.x = p,
                   .x_stride = keys,
                   .n = rows,
                   .w = ActView(act, v_t + h * v_dim * len * as, v_dim, keys, len),
                   .y = o + (i0 * a.o_stride + h * v_dim) * as,
                   .y_stride = a.o_stride});
    }
  }
}

}  // namespace dsv2
