// ExpertHost: what a dsv2-worker process does. It serves the control plane
// (dsv2.v1.ExpertWorker/Configure: rank, expert range, checkpoint check) and runs the data-plane
// layer loop on its own thread: receive a layer's tokens, run this shard's routed experts, send
// one weighted partial sum per token back, in lockstep with the coordinator. The data plane is
// TCP (the worker listens on its data port), or NCCL when Configure says so (every rank on a
// GPU of its own): the loop then joins the communicator whose unique id Configure carried.
//
// When the coordinator goes away (its connection closes or stalls) the loop goes back to
// waiting for a coordinator on the data port; the process keeps running with its shard bound,
// so a restarted coordinator (or a rebuilt data plane) finds it again.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "common/cluster_auth.h"
#include "common/comm/tcp/tcp_worker_link.h"
#include "common/expert_shard.h"
#include "common/model_config.h"
#include "common/safetensors.h"
#include "dsv2/v1/worker.grpc.pb.h"
#include "kernels/cpu_context.h"
#include "kernels/cuda/cuda_context.h"
#include "kernels/dtype.h"
#include "worker/cuda_expert_shard.h"

namespace dsv2 {

struct ExpertHostOptions {
  std::string model_dir;
  int rank = 1;
  int data_port = 0;  // 0: any free port (reported by Configure)
  int threads = 0;
  absl::Duration idle_timeout = absl::Seconds(5);
  absl::Duration timeout = absl::Seconds(10);
  // Where and in what precision the shard computes (dsv2-worker --device/--dtype): the CPU in
  // float32, or CUDA device `gpu` in bfloat16 or float32 (the shard uploaded at Configure).
  Device device = Device::kCpu;
  int gpu = 0;
  DType dtype = DType::kF32;
  ClusterSecret secret;  // when enabled, every control-plane call must prove it holds it
};

class ExpertHost final : public v1::ExpertWorker::Service {
 public:
  static absl::StatusOr<std::unique_ptr<ExpertHost>> Create(const ExpertHostOptions& options);
  ~ExpertHost() override;

  grpc::Status Configure(grpc::ServerContext* context, const v1::ConfigureRequest* request,
                         v1::ConfigureResponse* response) override;
  grpc::Status GetWorkerStatus(grpc::ServerContext* context, const v1::WorkerStatusRequest* request,
                               v1::WorkerStatus* response) override;
  grpc::Status GetChallenge(grpc::ServerContext* context, const v1::ChallengeRequest* request,
                            v1::Challenge* response) override;

  const std::string& fingerprint() const { return fingerprint_; }
  int data_port() const { return data_port_; }
  // "cpu" or "cuda:0 (NVIDIA H200)".
  std::string device_name() const;

 private:
  explicit ExpertHost(const ExpertHostOptions& options);
  void LayerLoop();
  // The NCCL session a Configure asked for, if any: the layer loop joins its communicator.
  struct NcclSession {
    std::string unique_id;
    int world_size = 0;
    uint64_t session = 0;
  };
  std::optional<NcclSession> TakeNcclSession();
  absl::Status ServeNccl(const NcclSession& session);
  // OK when authentication is off or the call carries a valid nonce and MAC (see cluster_auth.h);
  // else UNAUTHENTICATED, logged with the peer's address and counted.
  grpc::Status Authenticate(grpc::ServerContext* context, std::string_view method,
                            const google::protobuf::Message& request);
  // Serves one coordinator session on `link` until it drains, breaks or is superseded by a
  // newer Configure. `device_rows`: the link delivers activations in device memory (NCCL).
  // `close` drops the link's connection (TCP) before returning on a failure of ours.
  absl::Status ServeCoordinator(ExpertWorkerLink& link, bool device_rows,
                                const std::function<void()>& close);

  ExpertHostOptions options_;
  ModelConfig config_;
  std::unique_ptr<Checkpoint> checkpoint_;  // a safetensors checkpoint, or
  std::unique_ptr<GgufModel> gguf_;         // a GGUF file
  std::string fingerprint_;
  CpuContext ctx_;
  std::unique_ptr<TcpExpertWorkerLink> link_;
  int data_port_ = 0;  // link_->port(), read once: the link belongs to the loop thread

  mutable std::mutex mu_;
  // The shard as bound from the checkpoint, and its copy on the GPU when there is one.
  struct HostedShard {
    ExpertShard host;
    std::unique_ptr<CudaExpertShard> gpu;  // used by the layer loop only
  };
  std::unique_ptr<CudaContext> cuda_;   // --device cuda
  std::shared_ptr<HostedShard> shard_;  // guarded by mu_; null until configured
  uint64_t session_ = 0;
  std::optional<NcclSession> nccl_session_;  // guarded by mu_; set by Configure, taken by the loop
  // Bumped by every Configure; a link accepted before the latest Configure is dropped when it
  // goes idle (a coordinator whose host vanished never closes its socket).
  std::atomic<uint64_t> configure_count_{0};
  std::string state_ = "waiting";
  std::atomic<int64_t> layers_served_{0};
  NonceBook nonces_;
  std::atomic<int64_t> auth_refusals_{0};
  std::atomic<bool> stop_{false};
  std::thread loop_;
};

}  // namespace dsv2
