#include "coordinator/model/deepseek_v2_model.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <set>

#include "absl/strings/str_cat.h"
#include "common/checkpoint_fingerprint.h"
#include "common/gated_mlp.h"
#include "common/gguf_model_config.h"
#include "common/status_macros.h"
#include "coordinator/model/decoder_pass.h"
#include "coordinator/model/gguf_weights.h"
#include "coordinator/model/mla_attention_block.h"
#include "coordinator/model/model_weights_upload.h"
#include "coordinator/model/moe_block.h"
#include "coordinator/model/quantize_weights.h"
#include "coordinator/model/remote_moe.h"
#include "coordinator/model/synthetic_weights.h"
#include "kernels/embedding.h"
#include "kernels/matmul.h"
#include "kernels/rms_norm.h"

namespace dsv2 {

absl::Status DeepseekV2Model::PlaceOnDevice(const ModelPlacement& placement) {
  placement_ = placement;
  rope_ = RopeTable::FromConfig(config_);
  inv_freq_ = rope_.inv_freq.data();
  if (placement.device == Device::kCpu) {
    if (placement.dtype != DType::kF32 && placement.dtype != DType::kBF16) {
      return absl::InvalidArgumentError(
          absl::StrCat("the CPU engine computes in float32 or "
                       "bfloat16, not ",
                       PrecisionName(placement.dtype)));
    }
    return absl::OkStatus();
  }
  DSV2_ASSIGN_OR_RETURN(
      cuda_, CudaContext::Create({.device = placement.cuda_device, .act_dtype = placement.dtype}));
  const int64_t freq_bytes = static_cast<int64_t>(rope_.inv_freq.size() * sizeof(float));
  DSV2_ASSIGN_OR_RETURN(inv_freq_device_, DeviceBuffer::Allocate(Device::kCuda, freq_bytes));
  DSV2_RETURN_IF_ERROR(
      cuda_->CopyToDevice(inv_freq_device_.data(), rope_.inv_freq.data(), freq_bytes));
  DSV2_RETURN_IF_ERROR(cuda_->Synchronize());
  inv_freq_ = inv_freq_device_.as<float>();
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<DeepseekV2Model>> DeepseekV2Model::Load(
    const std::string& dir, const WeightBindOptions& options, const ModelPlacement& placement) {
  std::unique_ptr<DeepseekV2Model> m(new DeepseekV2Model());
  if (IsGgufPath(dir)) {
    DSV2_ASSIGN_OR_RETURN(m->gguf_, GgufModel::Open(dir));
    DSV2_ASSIGN_OR_RETURN(m->config_, ModelConfigFromGguf(*m->gguf_));
    DSV2_ASSIGN_OR_RETURN(m->weights_, BindGgufWeights(m->config_, *m->gguf_, options));
    m->weight_bytes_ = m->gguf_->total_bytes();
  } else {
    DSV2_ASSIGN_OR_RETURN(m->config_, LoadModelConfig(dir));
    DSV2_ASSIGN_OR_RETURN(m->checkpoint_, Checkpoint::Open(dir));
    DSV2_ASSIGN_OR_RETURN(m->weights_, BindModelWeights(m->config_, *m->checkpoint_, options));
    m->weight_bytes_ = m->checkpoint_->total_bytes();
  }
  const QuantScheme& scheme = placement.quantize;
  DSV2_RETURN_IF_ERROR(m->PlaceOnDevice(placement));
  if (scheme.enabled()) {
    DSV2_ASSIGN_OR_RETURN(const QuantizedBytes q,
                          QuantizeModelWeights(m->config_, scheme, /*threads=*/0, m->weights_));
    m->weight_bytes_ += q.after - q.before;
  }
  // The CPU reads the weights in place: map their pages now rather than fault them in during
  // the first forward passes (a hint; skipped when they would not fit, and when the weights were
  // quantized: the quantizer has read what it needed once). Only the tensors bound here: with
  // the routed experts on workers, none of theirs.
  if (placement.device == Device::kCpu && !scheme.enabled()) {
    // A progress line every 2 s, as the GPU upload prints (from a cold page cache this reads
    // the checkpoint from disk).
    const auto start = std::chrono::steady_clock::now();
    auto last = start;
    const std::function<void(int64_t, int64_t)> progress = [&](int64_t done, int64_t total) {
      const auto now = std::chrono::steady_clock::now();
      if (now - last < std::chrono::seconds(2)) return;
      last = now;
      std::fprintf(stderr,
                   "dsv2: mapping the weights into memory: %.2f / %.2f GB (%.0f%%), %.1f s\n",
                   done / 1e9, total / 1e9, 100.0 * done / total,
                   std::chrono::duration<double>(now - start).count());
    };
    PrefaultRanges(WeightRanges(m->weights_), progress);
  }
  if (m->cuda_ != nullptr) {
    DSV2_ASSIGN_OR_RETURN(ModelWeights device_weights,
                          UploadModelWeights(m->config_, m->weights_, *m->cuda_));
    m->weights_ = std::move(device_weights);
    m->weight_bytes_ = 0;
    for (const DeviceBuffer& b : m->weights_.device_storage) m->weight_bytes_ += b.bytes();
  }
  return m;
}

absl::StatusOr<std::unique_ptr<DeepseekV2Model>> DeepseekV2Model::Synthetic(
    const ModelConfig& config, const ModelPlacement& placement, uint64_t seed) {
  std::unique_ptr<DeepseekV2Model> m(new DeepseekV2Model());
  m->config_ = config;
  DSV2_RETURN_IF_ERROR(m->PlaceOnDevice(placement));
  // The fill runs on the GPU there: no thread pool. The weights are in the activation dtype.
  const CpuContext cpu(m->cuda_ ? 1 : 0, DetectCpuIsa(), placement.dtype);
  const ExecContext ctx = m->cuda_ ? ExecContext(*m->cuda_) : ExecContext(cpu);
  DSV2_ASSIGN_OR_RETURN(m->weights_, MakeSyntheticWeights(config, ctx, seed, placement.quantize));
  if (m->cuda_) DSV2_RETURN_IF_ERROR(m->cuda_->Synchronize());
  for (const DeviceBuffer& b : m->weights_.device_storage) m->weight_bytes_ += b.bytes();
  return m;
}

DeepseekV2Model::~DeepseekV2Model() = default;

std::string DeepseekV2Model::Fingerprint() const {
  if (checkpoint_ != nullptr) return CheckpointFingerprint(config_, *checkpoint_);
  if (gguf_ != nullptr) return GgufFingerprint(config_, *gguf_);
  return "";
}

int64_t DeepseekV2Model::MicroBatchSplit(const ForwardBatch& batch) const {
  if (expert_backend_ == nullptr || micro_batches_ < 2 || batch.chunks.size() < 2) return 0;
  // The first chunk index at which the first part holds at least half of the tokens; both
  // parts keep at least one chunk.
  const int64_t total = static_cast<int64_t>(batch.tokens.size());
  int64_t tokens = 0;
  for (size_t i = 0; i + 1 < batch.chunks.size(); ++i) {
    tokens += batch.chunks[i].num_tokens;
    if (2 * tokens >= total) return static_cast<int64_t>(i) + 1;
  }
  return static_cast<int64_t>(batch.chunks.size()) - 1;
}

void DeepseekV2Model::SetExpertBackend(RoutedExpertBackend* backend, int micro_batches) {
  expert_backend_ = backend;
  micro_batches_ = micro_batches;
  if (backend != nullptr && device() == Device::kCuda && remote_staging_ == nullptr) {
    remote_staging_ = std::make_unique<RemoteMoeStaging>();
  }
}

absl::StatusOr<LatentKvCache> DeepseekV2Model::MakeCache(int64_t num_pages,
                                                         int64_t page_size) const {
  return LatentKvCache::Create({.num_layers = config_.num_hidden_layers,
                                .row_dim = config_.latent_cache_dim(),
                                .page_size = page_size,
                                .num_pages = num_pages,
                                .device = placement_.device,
                                .dtype = placement_.dtype});
}

int64_t DeepseekV2Model::CachePageBytes(int64_t page_size) const {
  return config_.num_hidden_layers * page_size * config_.latent_cache_dim() *
         DTypeSize(placement_.dtype);
}

absl::StatusOr<TokenLayout> DeepseekV2Model::Prepare(LatentKvCache& cache,
                                                     const ForwardBatch& batch) const {
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
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": needs num_tokens >= 1 and start_pos >= 0"));
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
  TokenLayout layout;
  layout.n_tokens = total;
  layout.tokens = batch.tokens;
  for (const SequenceChunk& ch : batch.chunks) {
    layout.max_pages = std::max<int64_t>(layout.max_pages, cache.BlockTable(ch.seq_id).size());
  }
  layout.block_tables.assign(batch.chunks.size() * layout.max_pages, 0);
  int64_t offset = 0;
  for (size_t i = 0; i < batch.chunks.size(); ++i) {
    const SequenceChunk& ch = batch.chunks[i];
    const std::vector<int32_t>& table = cache.BlockTable(ch.seq_id);
    std::copy(table.begin(), table.end(), layout.block_tables.begin() + i * layout.max_pages);
    for (int64_t j = 0; j < ch.num_tokens; ++j) {
      const int64_t pos = ch.start_pos + j;
      layout.positions.push_back(static_cast<int32_t>(pos));
      layout.token_table.push_back(static_cast<int32_t>(i));
      layout.slots.push_back(cache.Slot(ch.seq_id, pos));
      if (ch.all_logits || j == ch.num_tokens - 1) {
        layout.out_rows.push_back(static_cast<int32_t>(offset + j));
      }
    }
    layout.max_position =
        std::max(layout.max_position, static_cast<int32_t>(ch.start_pos + ch.num_tokens - 1));
    offset += ch.num_tokens;
  }
  layout.n_out = static_cast<int64_t>(layout.out_rows.size());
  return layout;
}

absl::Status DeepseekV2Model::UploadTables(const ExecContext& ctx, TokenLayout& l) const {
  StepTables& t = l.tables;
  if (!ctx.on_cuda()) {
    t = {l.tokens.data(), l.positions.data(),    l.token_table.data(),
         l.slots.data(),  l.block_tables.data(), l.out_rows.data()};
    return absl::OkStatus();
  }
  Workspace& ws = ctx.workspace();
  auto upload = [&](const auto& v, const auto*& dst) -> absl::Status {
    using T = typename std::decay_t<decltype(v)>::value_type;
    T* d = ws.Alloc<T>(static_cast<int64_t>(v.size()));
    dst = d;
    return ctx.cuda().CopyToDevice(d, v.data(), static_cast<int64_t>(v.size() * sizeof(T)));
  };
  DSV2_RETURN_IF_ERROR(upload(l.tokens, t.tokens));
  DSV2_RETURN_IF_ERROR(upload(l.positions, t.positions));
  DSV2_RETURN_IF_ERROR(upload(l.token_table, t.token_table));
  DSV2_RETURN_IF_ERROR(upload(l.slots, t.slots));
  DSV2_RETURN_IF_ERROR(upload(l.block_tables, t.block_tables));
  DSV2_RETURN_IF_ERROR(upload(l.out_rows, t.out_rows));
  return absl::OkStatus();
}

absl::Status DeepseekV2Model::Forward(const ExecContext& ctx, LatentKvCache& cache,
                                      const ForwardBatch& batch, std::vector<float>* logits) const {
  LogitsResult result;
  DSV2_RETURN_IF_ERROR(Forward(ctx, cache, batch, LogitsRequest{}, &result));
  *logits = std::move(result.full);
  return absl::OkStatus();
}

absl::Status DeepseekV2Model::Forward(const ExecContext& ctx, LatentKvCache& cache,
                                      const ForwardBatch& batch, const LogitsRequest& request,
                                      LogitsResult* result) const {
  if (ctx.device() != device() || cache.device() != device()) {
    return absl::FailedPreconditionError(
        absl::StrCat("the model is on ", DeviceName(device()), " but the context is on ",
                     DeviceName(ctx.device()), " and the cache on ", DeviceName(cache.device())));
  }
  if (ctx.act_dtype() != dtype() || cache.dtype() != dtype()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the model computes in ", PrecisionName(dtype()), " but the context is in ",
        PrecisionName(ctx.act_dtype()), " and the cache in ", PrecisionName(cache.dtype())));
  }
  DSV2_ASSIGN_OR_RETURN(TokenLayout layout, Prepare(cache, batch));  // validates, reserves
  ctx.workspace().Reset();
  if (const int64_t split = MicroBatchSplit(batch); split > 0) {
    // Two micro-batches: chunks [0, split) and [split, end), their pages reserved above.
    ForwardBatch first, second;
    size_t offset = 0;
    for (size_t i = 0; i < batch.chunks.size(); ++i) {
      const SequenceChunk& ch = batch.chunks[i];
      ForwardBatch& part = static_cast<int64_t>(i) < split ? first : second;
      part.chunks.push_back(ch);
      part.tokens.insert(part.tokens.end(), batch.tokens.begin() + offset,
                         batch.tokens.begin() + offset + ch.num_tokens);
      offset += ch.num_tokens;
    }
    DSV2_ASSIGN_OR_RETURN(TokenLayout a, Prepare(cache, first));
    DSV2_ASSIGN_OR_RETURN(TokenLayout b, Prepare(cache, second));
    DSV2_RETURN_IF_ERROR(UploadTables(ctx, a));
    DSV2_RETURN_IF_ERROR(UploadTables(ctx, b));
    DSV2_ASSIGN_OR_RETURN(const float* y, RunLayersInTwo(ctx, cache, a, b));
    return FetchLogits(ctx, ctx.workspace(), y, a.n_out + b.n_out, request, result);
  }
  DSV2_RETURN_IF_ERROR(UploadTables(ctx, layout));
  DSV2_ASSIGN_OR_RETURN(const float* y, RunLayers(ctx, cache, layout));
  return FetchLogits(ctx, ctx.workspace(), y, layout.n_out, request, result);
}

absl::Status DeepseekV2Model::FetchLogits(const ExecContext& ctx, Workspace& scratch,
                                          const float* y, int64_t n_out,
                                          const LogitsRequest& request,
                                          LogitsResult* result) const {
  const int64_t vocab = config_.vocab_size;
  if (!request.summarize.empty() && static_cast<int64_t>(request.summarize.size()) != n_out) {
    return absl::InvalidArgumentError(absl::StrCat("LogitsRequest: ", request.summarize.size(),
                                                   " flags for ", n_out, " output rows"));
  }
  std::vector<int32_t> full_rows, summary_rows;
  for (int64_t r = 0; r < n_out; ++r) {
    (!request.summarize.empty() && request.summarize[r] ? summary_rows : full_rows)
        .push_back(static_cast<int32_t>(r));
  }
  result->full.resize(full_rows.size() * vocab);
  result->summaries.resize(summary_rows.size());
  CudaContext* cuda = ctx.on_cuda() ? &ctx.cuda() : nullptr;
  if (!summary_rows.empty()) {
    const int64_t n = static_cast<int64_t>(summary_rows.size());
    const LogitsSummaryArgs args{.logits = y,
                                 .vocab = vocab,
                                 .rows = summary_rows.data(),
                                 .n = n,
                                 .top_n = std::clamp(request.top_n, 0, kMaxSummaryTop),
                                 .out = result->summaries.data()};
    if (cuda == nullptr) {
      LogitsSummary(ctx, args);
    } else {
      LogitsSummaryArgs dev = args;
      int32_t* rows = scratch.Alloc<int32_t>(n);
      auto* out = static_cast<LogitsSummaryRow*>(scratch.Alloc(n * sizeof(LogitsSummaryRow)));
      DSV2_RETURN_IF_ERROR(cuda->CopyToDevice(rows, summary_rows.data(), n * 4));
      dev.rows = rows;
      dev.out = out;
      const ExecContext on_scratch(*cuda, scratch);
      LogitsSummary(on_scratch, dev);
      DSV2_RETURN_IF_ERROR(cuda->CopyToHost(result->summaries.data(), out,
                                            n * static_cast<int64_t>(sizeof(LogitsSummaryRow))));
    }
  }
  // Full rows: runs of consecutive rows in one copy each.
  for (size_t i = 0; i < full_rows.size();) {
    size_t j = i + 1;
    while (j < full_rows.size() && full_rows[j] == full_rows[j - 1] + 1) ++j;
    const float* src = y + static_cast<int64_t>(full_rows[i]) * vocab;
    float* dst = result->full.data() + static_cast<int64_t>(i) * vocab;
    const int64_t count = static_cast<int64_t>(j - i) * vocab;
    if (cuda == nullptr) {
      std::copy(src, src + count, dst);
    } else {
      DSV2_RETURN_IF_ERROR(cuda->CopyToHost(dst, src, count * 4));
    }
    i = j;
  }
  return cuda == nullptr ? absl::OkStatus() : cuda->Synchronize();
}

DecoderEnv DeepseekV2Model::MakeDecoderEnv(const ExecContext& ctx, LatentKvCache& cache) const {
  return DecoderEnv{.ctx = ctx,
                    .config = config_,
                    .weights = weights_,
                    .inv_freq = inv_freq_,
                    .attn_factor = rope_.attn_factor,
                    .cache = cache,
                    .backend = expert_backend_,
                    .staging = remote_staging_.get(),
                    .router_observer = router_observer_};
}

absl::StatusOr<const float*> DeepseekV2Model::RunLayers(const ExecContext& ctx,
                                                        LatentKvCache& cache,
                                                        const TokenLayout& layout) const {
  const DecoderEnv env = MakeDecoderEnv(ctx, cache);
  DecoderPass pass(env, layout);
  for (int64_t l = 0; l < config_.num_hidden_layers; ++l) {
    pass.Attention(l);
    DSV2_RETURN_IF_ERROR(pass.Mlp(l));
  }
  float* y = ctx.workspace().Alloc<float>(layout.n_out * config_.vocab_size);  // [n_out, vocab]
  pass.Logits(y);
  return y;
}

absl::StatusOr<const float*> DeepseekV2Model::RunLayersInTwo(const ExecContext& ctx,
                                                             LatentKvCache& cache,
                                                             const TokenLayout& first,
                                                             const TokenLayout& second) const {
  const DecoderEnv env = MakeDecoderEnv(ctx, cache);
  DecoderPass a(env, first), b(env, second);
  // While one micro-batch's routed tokens are with the workers, the other computes attention:
  //   a.Attn(0) | a.Mlp(0) ‖ b.Attn(0) | b.Mlp(0) ‖ a.Attn(1) | a.Mlp(1) ‖ b.Attn(1) | ...
  // Only one exchange is ever in flight, so the workers' lockstep protocol is unchanged.
  const int64_t layers = config_.num_hidden_layers;
  a.Attention(0);
  for (int64_t l = 0; l < layers; ++l) {
    DSV2_RETURN_IF_ERROR(a.Mlp(l, [&] { b.Attention(l); }));
    const std::function<void()> next = [&] {
      if (l + 1 < layers) a.Attention(l + 1);
    };
    DSV2_RETURN_IF_ERROR(b.Mlp(l, next));
  }
  const int64_t vocab = config_.vocab_size;
  float* y = ctx.workspace().Alloc<float>((first.n_out + second.n_out) * vocab);
  a.Logits(y);                        // rows [0, first.n_out)
  b.Logits(y + first.n_out * vocab);  // then the second micro-batch's, in chunk order
  return y;
}

}  // namespace dsv2
