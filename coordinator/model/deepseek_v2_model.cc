#include "coordinator/model/deepseek_v2_model.h"

#include <set>

#include "absl/strings/str_cat.h"
#include "common/gated_mlp.h"
#include "common/status_macros.h"
#include "coordinator/model/mla_attention_block.h"
#include "coordinator/model/moe_block.h"
#include "kernels/embedding.h"
#include "kernels/matmul.h"
#include "kernels/rms_norm.h"

namespace dsv2 {

absl::StatusOr<std::unique_ptr<DeepseekV2Model>> DeepseekV2Model::Load(
    const std::string& dir, const WeightBindOptions& options) {
  std::unique_ptr<DeepseekV2Model> m(new DeepseekV2Model());
  DSV2_ASSIGN_OR_RETURN(m->config_, LoadModelConfig(dir));
  DSV2_ASSIGN_OR_RETURN(m->checkpoint_, Checkpoint::Open(dir));
  DSV2_ASSIGN_OR_RETURN(m->weights_, BindModelWeights(m->config_, *m->checkpoint_, options));
  m->rope_ = RopeTable::FromConfig(m->config_);
  return m;
}

LatentKvCache DeepseekV2Model::MakeCache(int64_t num_pages, int64_t page_size) const {
  return LatentKvCache({.num_layers = config_.num_hidden_layers,
                        .row_dim = config_.latent_cache_dim(),
                        .page_size = page_size,
                        .num_pages = num_pages});
}

absl::StatusOr<TokenLayout> DeepseekV2Model::Prepare(LatentKvCache& cache,
                                                     const ForwardBatch& batch) const {
  TokenLayout layout;
  int64_t total = 0;
  std::set<int64_t> seen;
  for (size_t i = 0; i < batch.chunks.size(); ++i) {
    const SequenceChunk& ch = batch.chunks[i];
    const std::string where = absl::StrCat("chunk ", i, " (sequence ", ch.seq_id, ")");
    if (!cache.HasSequence(ch.seq_id)) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": no such sequence in the cache"));
    }
    if (!seen.insert(ch.seq_id).second) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": sequence appears twice"));
    }
    if (ch.num_tokens < 1 || ch.start_pos < 0) {
      return absl::InvalidArgumentError(absl::StrCat(where,
                                                     ": needs num_tokens >= 1 and "
                                                     "start_pos >= 0"));
    }
    if (ch.start_pos + ch.num_tokens > config_.max_position_embeddings) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": positions up to ", ch.start_pos + ch.num_tokens,
                       " exceed max_position_embeddings ", config_.max_position_embeddings));
    }
    total += ch.num_tokens;
  }
  if (total != static_cast<int64_t>(batch.tokens.size())) {
    return absl::InvalidArgumentError(
        absl::StrCat("batch has ", batch.tokens.size(), " tokens but its chunks count ", total));
  }
  for (size_t i = 0; i < batch.tokens.size(); ++i) {
    if (batch.tokens[i] < 0 || batch.tokens[i] >= config_.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat("token id ", batch.tokens[i], " at index ", i,
                                                     " is outside [0, ", config_.vocab_size, ")"));
    }
  }
  for (const SequenceChunk& ch : batch.chunks) {
    DSV2_RETURN_IF_ERROR(cache.Reserve(ch.seq_id, ch.start_pos + ch.num_tokens));
  }
  layout.n_tokens = total;
  for (const SequenceChunk& ch : batch.chunks) {
    const int32_t* table = cache.BlockTable(ch.seq_id).data();
    for (int64_t j = 0; j < ch.num_tokens; ++j) {
      layout.positions.push_back(static_cast<int32_t>(ch.start_pos + j));
      layout.seq_ids.push_back(ch.seq_id);
      layout.block_tables.push_back(table);
    }
  }
  return layout;
}

absl::Status DeepseekV2Model::Forward(const CpuContext& ctx, LatentKvCache& cache,
                                      const ForwardBatch& batch, std::vector<float>* logits) const {
  DSV2_ASSIGN_OR_RETURN(const TokenLayout layout, Prepare(cache, batch));
  const ModelConfig& c = config_;
  const int64_t n = layout.n_tokens, hidden = c.hidden_size;
  const float eps = static_cast<float>(c.rms_norm_eps);

  std::vector<float> x(n * hidden);  // [n, hidden] residual stream
  std::vector<float> h(n * hidden);  // [n, hidden] normalized
  EmbeddingLookup(weights_.embed, batch.tokens.data(), n, x.data());
  std::vector<float> scratch;
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const LayerWeights& L = weights_.layers[l];
    RmsNorm(ctx, {.x = x.data(),
                  .y = h.data(),
                  .weight = L.input_norm.data(),
                  .n = n,
                  .dim = hidden,
                  .x_stride = hidden,
                  .y_stride = hidden,
                  .eps = eps});
    MlaAttentionForward({ctx, c, rope_, cache, layout, l}, L.attn, h.data(), x.data());
    RmsNorm(ctx, {.x = x.data(),
                  .y = h.data(),
                  .weight = L.post_attention_norm.data(),
                  .n = n,
                  .dim = hidden,
                  .x_stride = hidden,
                  .y_stride = hidden,
                  .eps = eps});
    if (L.is_moe) {
      DSV2_RETURN_IF_ERROR(MoeForward(ctx, c, L.moe,
                                      {.layer = l, .x = h.data(), .n = n, .residual = x.data()},
                                      expert_backend_));
    } else {
      GatedMlp(ctx, L.mlp, {.x = h.data(), .n = n, .out = x.data(), .accumulate = true}, scratch);
    }
  }

  // Rows whose logits were asked for, then the final norm and lm_head on those alone.
  std::vector<int64_t> rows;
  int64_t offset = 0;
  for (const SequenceChunk& ch : batch.chunks) {
    if (ch.all_logits) {
      for (int64_t j = 0; j < ch.num_tokens; ++j) rows.push_back(offset + j);
    } else {
      rows.push_back(offset + ch.num_tokens - 1);
    }
    offset += ch.num_tokens;
  }
  const int64_t n_out = static_cast<int64_t>(rows.size());
  for (int64_t i = 0; i < n_out; ++i) {
    RmsNorm(ctx, {.x = x.data() + rows[i] * hidden,
                  .y = h.data() + i * hidden,
                  .weight = weights_.final_norm.data(),
                  .n = 1,
                  .dim = hidden,
                  .x_stride = hidden,
                  .y_stride = hidden,
                  .eps = eps});
  }
  logits->resize(n_out * c.vocab_size);
  MatMul(ctx, {.x = h.data(),
               .x_stride = hidden,
               .n = n_out,
               .w = weights_.lm_head,
               .y = logits->data(),
               .y_stride = c.vocab_size});
  return absl::OkStatus();
}

}  // namespace dsv2
