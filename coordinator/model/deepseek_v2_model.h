// DeepseekV2Model: a DeepSeek-V2-family checkpoint on the CPU. One Forward call runs a batch of
// sequences of different lengths and positions through every layer:
//   x = embed(tokens)
//   per layer: x += MLA(rmsnorm(x)); x += MLP-or-MoE(rmsnorm(x))
//   logits = lm_head(rmsnorm(x)) for the rows asked for
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/model_config.h"
#include "common/safetensors.h"
#include "coordinator/model/forward_batch.h"
#include "coordinator/model/latent_kv_cache.h"
#include "coordinator/model/model_weights.h"
#include "coordinator/model/rope_table.h"
#include "coordinator/model/routed_expert_backend.h"
#include "kernels/cpu_context.h"

namespace dsv2 {

class DeepseekV2Model {
 public:
  // Reads <dir>/config.json and the safetensors of `dir` and binds every weight (of the routed
  // experts, those of options' range: all by default).
  static absl::StatusOr<std::unique_ptr<DeepseekV2Model>> Load(
      const std::string& dir, const WeightBindOptions& options = {});

  // Routed experts run on `backend` from now on (null: in process). Not thread-safe with
  // Forward; set it while no forward runs.
  void SetExpertBackend(RoutedExpertBackend* backend) { expert_backend_ = backend; }

  const ModelConfig& config() const { return config_; }
  const ModelWeights& weights() const { return weights_; }
  const Checkpoint& checkpoint() const { return *checkpoint_; }

  // A cache sized for this model: `num_pages` pages of `page_size` rows.
  LatentKvCache MakeCache(int64_t num_pages, int64_t page_size = 64) const;

  // Runs the batch and writes logits [n_out, vocab_size] (float32), n_out = Σ over chunks of
  // (all_logits ? num_tokens : 1), in chunk order. Reserves cache pages for every chunk first;
  // INVALID_ARGUMENT names a bad token id or position, RESOURCE_EXHAUSTED a full cache (then
  // nothing was computed), UNAVAILABLE an expert backend that lost a worker.
  absl::Status Forward(const CpuContext& ctx, LatentKvCache& cache, const ForwardBatch& batch,
                       std::vector<float>* logits) const;

 private:
  DeepseekV2Model() = default;
  absl::StatusOr<TokenLayout> Prepare(LatentKvCache& cache, const ForwardBatch& batch) const;

  ModelConfig config_;
  std::unique_ptr<Checkpoint> checkpoint_;
  ModelWeights weights_;
  RopeTable rope_;
  RoutedExpertBackend* expert_backend_ = nullptr;
};

}  // namespace dsv2
