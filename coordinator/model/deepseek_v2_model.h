// DeepseekV2Model: a DeepSeek-V2-family checkpoint on the CPU or one CUDA device. One Forward
// call runs a batch of sequences of different lengths and positions through every layer:
//   x = embed(tokens)
//   per layer: x += MLA(rmsnorm(x)); x += MLP-or-MoE(rmsnorm(x))
//   logits = lm_head(rmsnorm(x)) for the rows asked for
// The same code runs on both devices: ops dispatch on the ExecContext they are given.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/gguf.h"
#include "common/model_config.h"
#include "common/safetensors.h"
#include "coordinator/model/forward_batch.h"
#include "coordinator/model/latent_kv_cache.h"
#include "coordinator/model/model_weights.h"
#include "coordinator/model/quantize_weights.h"
#include "coordinator/model/rope_table.h"
#include "coordinator/model/routed_expert_backend.h"
#include "kernels/cuda/cuda_context.h"
#include "kernels/exec_context.h"

namespace dsv2 {

struct RemoteMoeStaging;  // remote_moe.h
struct DecoderEnv;        // decoder_pass.h

// Where the model runs and in which precision.
struct ModelPlacement {
  Device device = Device::kCpu;
  DType dtype = DType::kF32;  // bfloat16, or float32 (the verification mode)
  int cuda_device = 0;
  // --quantize: the weights quantized at load (coordinator/model/quantize_weights.h); by
  // default none (as stored).
  QuantScheme quantize = {};
};

class DeepseekV2Model {
 public:
  // Reads <dir>/config.json and the safetensors of `dir` — or, when `dir` names a .gguf file,
  // that GGUF model (its keys for the config, its tensors in place) — and binds every weight
  // (of the routed experts, those of options' range: all by default); on CUDA, uploads them
  // once.
  static absl::StatusOr<std::unique_ptr<DeepseekV2Model>> Load(
      const std::string& dir, const WeightBindOptions& options = {},
      const ModelPlacement& placement = {});
  // A model of `config`'s shapes with random weights created in place on the placement's
  // device (coordinator/model/synthetic_weights.h): real size, no checkpoint file.
  static absl::StatusOr<std::unique_ptr<DeepseekV2Model>> Synthetic(const ModelConfig& config,
                                                                    const ModelPlacement& placement,
                                                                    uint64_t seed = 1234);
  ~DeepseekV2Model();

  // Routed experts run on `backend` from now on (null: in process). Not thread-safe with
  // Forward; set it while no forward runs. On a GPU the exchange is staged through pinned host
  // buffers (remote_moe.h), and Forward synchronises inside each MoE layer (no CUDA graphs).
  // `micro_batches` 2: a step of two or more sequences runs as two micro-batches, so that
  // one's attention overlaps the other's expert exchange (two-batch overlap; decoder_pass.h).
  void SetExpertBackend(RoutedExpertBackend* backend, int micro_batches = 1);
  bool has_expert_backend() const { return expert_backend_ != nullptr; }
  // Every later forward pass reports each MoE layer's routing to `observer` (null: none). A
  // GPU model copies the decision to the host and waits for it: for tests only.
  void SetRouterObserver(RouterObserver* observer) { router_observer_ = observer; }

  const ModelConfig& config() const { return config_; }
  // On the model's device (host views of the checkpoint on the CPU).
  const ModelWeights& weights() const { return weights_; }
  // The mmap'ed checkpoint; null for a synthetic model.
  const Checkpoint* checkpoint() const { return checkpoint_.get(); }  // null for GGUF
  const GgufModel* gguf() const { return gguf_.get(); }               // null for safetensors
  // The checkpoint's fingerprint (common/checkpoint_fingerprint.h), safetensors or GGUF; ""
  // for a synthetic model.
  std::string Fingerprint() const;
  Device device() const { return placement_.device; }
  DType dtype() const { return placement_.dtype; }
  // The --quantize scheme the weights were quantized with at load.
  const QuantScheme& quantize() const { return placement_.quantize; }
  // The model's CUDA stream and handles (null on the CPU): what ExecContext wraps on a GPU.
  CudaContext* cuda_context() const { return cuda_.get(); }
  int64_t weight_bytes() const { return weight_bytes_; }

  // A cache on the model's device and in its dtype: `num_pages` pages of `page_size` rows.
  absl::StatusOr<LatentKvCache> MakeCache(int64_t num_pages, int64_t page_size = 64) const;
  // Bytes one cache page takes (all layers).
  int64_t CachePageBytes(int64_t page_size = 64) const;

  // Runs the batch and writes logits [n_out, vocab_size] (float32, host), n_out = Σ over chunks
  // of (all_logits ? num_tokens : 1), in chunk order. Reserves cache pages for every chunk
  // first; INVALID_ARGUMENT names a bad token id or position, RESOURCE_EXHAUSTED a full cache
  // (then nothing was computed), UNAVAILABLE an expert backend that lost a worker,
  // FAILED_PRECONDITION a context on another device than the model's.
  absl::Status Forward(const ExecContext& ctx, LatentKvCache& cache, const ForwardBatch& batch,
                       std::vector<float>* logits) const;
  // The same with some rows reduced to a LogitsSummaryRow on the device (`request`).
  absl::Status Forward(const ExecContext& ctx, LatentKvCache& cache, const ForwardBatch& batch,
                       const LogitsRequest& request, LogitsResult* result) const;

  // The pieces of Forward, for runners that lay out a step themselves (DecodeGraphs):
  // Prepare validates the batch, reserves its pages and builds the host tables; RunLayers
  // computes from tables already on the context's device (layout.tables) and returns the
  // logits [n_out, vocab] float32 on that device, in the context's workspace. Without an
  // expert backend RunLayers neither allocates outside the workspace nor synchronises (on
  // CUDA it can be captured).
  absl::StatusOr<TokenLayout> Prepare(LatentKvCache& cache, const ForwardBatch& batch) const;
  absl::StatusOr<const float*> RunLayers(const ExecContext& ctx, LatentKvCache& cache,
                                         const TokenLayout& layout) const;
  // Brings RunLayers' logits [n_out, vocab] (on ctx's device) to the host as `request` asks;
  // temporaries come from `scratch` (on ctx's device). Synchronises on a GPU.
  absl::Status FetchLogits(const ExecContext& ctx, Workspace& scratch, const float* logits,
                           int64_t n_out, const LogitsRequest& request, LogitsResult* result) const;

 private:
  DeepseekV2Model() = default;
  absl::Status UploadTables(const ExecContext& ctx, TokenLayout& layout) const;
  absl::Status PlaceOnDevice(const ModelPlacement& placement);
  DecoderEnv MakeDecoderEnv(const ExecContext& ctx, LatentKvCache& cache) const;
  // Where Forward splits `batch` into two micro-batches (a chunk index), or 0 for one pass.
  int64_t MicroBatchSplit(const ForwardBatch& batch) const;
  absl::StatusOr<const float*> RunLayersInTwo(const ExecContext& ctx, LatentKvCache& cache,
                                              const TokenLayout& first,
                                              const TokenLayout& second) const;

  ModelPlacement placement_;
  std::unique_ptr<CudaContext> cuda_;  // first member: destroyed after everything on the device
  ModelConfig config_;
  std::unique_ptr<Checkpoint> checkpoint_;  // a safetensors checkpoint, or
  std::unique_ptr<GgufModel> gguf_;         // a GGUF file
  ModelWeights weights_;
  int64_t weight_bytes_ = 0;
  RopeTable rope_;
  const float* inv_freq_ = nullptr;  // rope_.inv_freq on the model's device
  DeviceBuffer inv_freq_device_;
  RoutedExpertBackend* expert_backend_ = nullptr;
  int micro_batches_ = 1;
  RouterObserver* router_observer_ = nullptr;
  std::unique_ptr<RemoteMoeStaging> remote_staging_;  // with a backend on a GPU
};

}  // namespace dsv2
