// ExpertParallelBackend: the coordinator's side of expert parallelism. It owns the data plane
// to the workers (a TcpExpertDispatcher), runs every MoE layer's routed experts through it —
// dispatch the tokens to the ranks owning their experts, run the coordinator's own shard if it
// has one, combine the partial sums in rank order — and keeps the group healthy: when a worker
// is lost the layer fails with UNAVAILABLE, the group reports NOT_SERVING, and a supervisor
// thread configures the workers again (a restarted worker rejoins at its address with its
// rank) and rebuilds the data plane, after which it reports SERVING.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/cluster_auth.h"
#include "common/comm/communicator.h"
#include "common/comm/expert_placement.h"
#include "coordinator/expert_parallel/data_plane.h"
#include "coordinator/model/deepseek_v2_model.h"
#include "coordinator/model/routed_expert_backend.h"
#include "dsv2/v1/worker.pb.h"
#include "grpcpp/security/credentials.h"

namespace dsv2 {

struct ExpertParallelOptions {
  // Control-plane addresses of the workers ("host:port"), in rank order: rank i + 1.
  std::vector<std::string> workers;
  // The coordinator hosts a shard of the experts itself (as rank 0).
  bool coordinator_hosts_experts = false;
  // A worker that does not answer a layer within this is lost: the requests of that step fail
  // with UNAVAILABLE.
  absl::Duration timeout = absl::Seconds(5);
  // How often the supervisor retries configuring lost workers.
  absl::Duration retry_interval = absl::Seconds(1);
  // The cluster secret (cluster_auth.h): every control call proves it holds it, and a worker
  // that holds none is refused. Not enabled: the calls carry no credentials.
  ClusterSecret secret = {};
  // Credentials towards the workers' control ports (MakeChannelCredentials of --worker-tls-ca,
  // --worker-tls-cert/-key, read once at start-up); null: plaintext.
  std::shared_ptr<grpc::ChannelCredentials> worker_credentials = nullptr;
  // The data plane: "auto", "tcp" or "nccl" (data_plane.h), chosen at the first connection.
  std::string transport = "auto";
  // 2: steps of two or more sequences run as two micro-batches, one's attention overlapping
  // the other's exchange (DeepseekV2Model::SetExpertBackend); 1: one pass. 1 by default: on
  // ranks that share CPU cores the second exchange per layer costs more than it hides
  // (docs/BENCHMARKS.md).
  int micro_batches = 1;
};

// How much of the exchange the coordinator's own work hid, summed over MoE layer calls. A layer
// sends its tokens (dispatch), computes while they are away (its own expert shard, the shared
// experts), then waits for the partial sums (combine).
struct ExchangeOverlapStats {
  int64_t layers = 0;
  double dispatch_seconds = 0;    // sending the tokens
  double away_seconds = 0;        // from the tokens sent to every partial sum back
  double overlapped_seconds = 0;  // of away_seconds, spent computing
  double waited_seconds = 0;      // of away_seconds, spent waiting in combine
  // The share of the exchange (sent → back) hidden behind computation.
  double hidden_fraction() const {
    return away_seconds > 0 ? overlapped_seconds / away_seconds : 0;
  }
};

class ExpertParallelBackend final : public RoutedExpertBackend {
 public:
  // The placement the options imply for this model: what the coordinator must bind locally.
  static absl::StatusOr<ExpertPlacement> PlacementFor(const ModelConfig& config,
                                                      const ExpertParallelOptions& options);

  // `model` must have been loaded with the coordinator's own expert range (PlacementFor).
  // Starts the supervisor, which connects the workers in the background; `on_serving` is
  // called with true when the whole group is up and false when it breaks.
  ExpertParallelBackend(const DeepseekV2Model& model, const ExpertParallelOptions& options,
                        ExpertPlacement placement, std::function<void(bool)> on_serving);
  ~ExpertParallelBackend() override;

  absl::Status Run(const CpuContext& ctx, int64_t layer, const RouterSelection& sel, const float* x,
                   int64_t hidden, float* out, const std::function<void()>& while_away) override;
  // NCCL: Run's rows are float32 device memory (fixed once the first connection chose it).
  bool device_activations() const override { return nccl_; }

  bool serving() const { return serving_; }
  // Why the group is not serving (OK when it is).
  absl::Status status() const;
  CommStats comm_stats() const;
  // Σ over MoE layer calls of the batch's tokens: bytes per token per layer = bytes / this.
  int64_t tokens_routed() const { return tokens_routed_; }
  ExchangeOverlapStats overlap_stats() const;
  const ExpertPlacement& placement() const { return placement_; }
  const std::vector<std::string>& workers() const { return options_.workers; }

 private:
  void Supervise();
  absl::Status ConnectAll();
  absl::StatusOr<v1::ConfigureResponse> ConfigureWorker(int rank, uint64_t session, DataPlane plane,
                                                        const std::string& nccl_unique_id);
  absl::StatusOr<std::unique_ptr<ExpertDispatcher>> ConnectTcp(
      const std::vector<std::string>& data_endpoints);
  absl::StatusOr<std::unique_ptr<ExpertDispatcher>> ConnectNccl(uint64_t session,
                                                                const std::string& unique_id);
  static absl::StatusOr<std::string> NcclUniqueId();
  void MarkBroken(const absl::Status& why);

  const DeepseekV2Model& model_;
  ExpertParallelOptions options_;
  ExpertPlacement placement_;
  std::string fingerprint_;
  std::function<void(bool)> on_serving_;

  mutable std::mutex mu_;  // guards dispatcher_ and status_; held for a whole layer in Run
  std::condition_variable cv_;
  std::unique_ptr<ExpertDispatcher> dispatcher_;
  absl::Status status_ = absl::UnavailableError("expert workers are not connected yet");
  CommStats retired_stats_;       // traffic of dispatchers that were replaced
  ExchangeOverlapStats overlap_;  // guarded by mu_
  uint64_t session_ = 0;
  std::atomic<bool> serving_{false};
  // Chosen by the first ConnectAll (supervisor thread), before the first serving_ = true.
  bool data_plane_decided_ = false;
  std::atomic<bool> nccl_{false};
  std::atomic<int64_t> tokens_routed_{0};
  bool stop_ = false;
  std::thread supervisor_;
};

}  // namespace dsv2
