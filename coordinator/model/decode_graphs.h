// DecodeGraphs: decode steps replayed from CUDA graphs, one per batch-size bucket (1, 2, 4, …,
// max_batch). A step of n decoding sequences (one token each) is padded to the smallest bucket
// b >= n: the padding tokens are token 0 at position 0, writing and reading the cache's scratch
// page, and their logits are dropped. Every bucket uses the same device tables (tokens,
// positions, slots, block tables of max_context / page_size pages) at fixed addresses, and its
// own graph captured after one eager warm-up run on a workspace kept for graphs alone. A
// warm-up that grows that workspace moves it, so the graphs captured before are dropped and
// captured again on their next use; after every bucket has run once, steps allocate nothing.
//
// Off the GPU (or with capture off) the same padded layout runs eagerly: that is how the
// padding is tested on the CPU, and what a captured graph is compared with bit for bit.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "coordinator/model/deepseek_v2_model.h"

namespace dsv2 {

struct DecodeGraphOptions {
  int64_t max_context = 4096;  // positions of a graphed step stay below this
  int64_t max_batch = 256;     // the largest bucket
  bool capture = true;         // false: the padded layout, run eagerly (tests, CPU)
};

class DecodeGraphs {
 public:
  // `cpu` is used when the model is on the CPU (eager padded runs only).
  static absl::StatusOr<std::unique_ptr<DecodeGraphs>> Create(const DeepseekV2Model& model,
                                                              const CpuContext& cpu,
                                                              const DecodeGraphOptions& options);
  ~DecodeGraphs();

  // Whether Forward takes this batch: every chunk is one token without all_logits, at most
  // max_batch of them, positions below max_context, and no expert backend.
  bool Accepts(const ForwardBatch& batch) const;
  // DeepseekV2Model::Forward's contracts for an accepted batch.
  absl::Status Forward(LatentKvCache& cache, const ForwardBatch& batch, std::vector<float>* logits);
  absl::Status Forward(LatentKvCache& cache, const ForwardBatch& batch,
                       const LogitsRequest& request, LogitsResult* result);

  int64_t graphs_captured() const { return captures_; }

 private:
  DecodeGraphs(const DeepseekV2Model& model, const DecodeGraphOptions& options)
      : model_(model), options_(options) {}
  // Host tables of `layout` padded to `bucket` rows, written to the staging buffer.
  void Stage(const TokenLayout& layout, int64_t bucket, int32_t scratch_page, int64_t scratch_slot);
  // The fixed-address layout of a bucket (its tables point into device_tables_).
  TokenLayout BucketLayout(int64_t bucket) const;
  absl::StatusOr<const float*> Run(LatentKvCache& cache, int64_t bucket);

  const DeepseekV2Model& model_;
  DecodeGraphOptions options_;
  int64_t max_pages_ = 0;  // per block table row: max_context / page_size, rounded up
  std::unique_ptr<Workspace> workspace_;  // the graphs' temporaries (addresses they hold)
  std::unique_ptr<ExecContext> ctx_;
  std::unique_ptr<Workspace> fetch_workspace_;  // FetchLogits' temporaries, never captured
  // [tokens | positions | token_table | out_rows | block_tables | slots] for max_batch rows; on
  // CUDA staged in pinned host memory and copied to the device in one piece.
  int64_t table_bytes_ = 0;
  DeviceBuffer device_tables_;
  void* pinned_ = nullptr;
  struct Captured {
    std::unique_ptr<CudaGraph> graph;
    const float* logits = nullptr;  // [bucket, vocab] in workspace_
  };
  std::map<int64_t, Captured> graphs_;
  int64_t overflows_seen_ = 0;
  int64_t captures_ = 0;
};

}  // namespace dsv2
