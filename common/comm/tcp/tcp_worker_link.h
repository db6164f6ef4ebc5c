// The worker side of the TCP transport. The worker listens and the coordinator dials: in
// Kubernetes the workers are a StatefulSet behind a headless Service with stable names
// (worker-0.workers:29500, ...), so the coordinator's list of worker endpoints is static
// configuration and a restarted worker is found again at the same name. Only rank 0 exchanges
// activations, so the connections form a star of persistent links, not a full mesh.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/cluster_auth.h"
#include "common/comm/communicator.h"

namespace dsv2 {

struct TcpWorkerOptions {
  std::string bind_address = "0.0.0.0";
  // WaitForCoordinator gives up (DEADLINE_EXCEEDED) when no coordinator handshakes by then.
  absl::Duration accept_timeout = absl::Seconds(60);
  // ReceiveDispatch returns DEADLINE_EXCEEDED when no message starts by then (the link stays
  // usable: an idle coordinator is not a failure).
  absl::Duration idle_timeout = absl::Seconds(10);
  // The longest a started message, or a SendCombine, may take before the coordinator counts as
  // stalled (UNAVAILABLE).
  absl::Duration timeout = absl::Seconds(10);
  int64_t max_frame_bytes = int64_t{4} << 30;
  // Handshake checks: the rank and world size the coordinator must assign (-1 / 0: any).
  int expected_rank = -1;
  int expected_world_size = 0;
  // When enabled, a coordinator must prove it holds the cluster secret in the handshake (an
  // HMAC over a fresh nonce of this worker's and its hello); one that cannot is refused.
  ClusterSecret secret = {};
};

class TcpExpertWorkerLink final : public ExpertWorkerLink {
 public:
  // Binds and listens on `port` (0: the system picks one; see port()).
  static absl::StatusOr<std::unique_ptr<TcpExpertWorkerLink>> Listen(
      int port, const TcpWorkerOptions& options = {});
  ~TcpExpertWorkerLink() override;

  int port() const;
  // Accepts connections until one completes the handshake: a hello carrying a rank in
  // [1, world size) that matches the expectations. Connections that close or speak something
  // else are dropped (e.g. TCP probes); a hello with an unexpected rank or world size is refused
  // and returned as FAILED_PRECONDITION. Called again, it replaces the current coordinator.
  absl::Status WaitForCoordinator();
  bool connected() const { return connected_; }
  // Handshakes refused for missing or wrong cluster credentials (any thread may read it).
  int64_t auth_refusals() const { return auth_refusals_; }
  // Drops the connection to the coordinator (which then sees this rank as gone).
  void Close();

  int rank() const override { return rank_; }
  int world_size() const override { return world_size_; }
  absl::StatusOr<DispatchedTokens> ReceiveDispatch() override;
  absl::Status SendCombine(int layer, const float* partial, int64_t n, int64_t hidden) override;

 private:
  struct Impl;
  explicit TcpExpertWorkerLink(const TcpWorkerOptions& options);
  // Reads a hello on a fresh connection; OK with the hello, or the reason to drop it.
  absl::Status Handshake(absl::Time deadline, bool* refused);
  absl::Status Break(absl::Status status);  // closes the link, makes `status` sticky
  absl::Status CoordinatorError(const std::string& what) const;

  TcpWorkerOptions options_;
  std::unique_ptr<Impl> impl_;
  bool connected_ = false;
  int rank_ = -1;
  int world_size_ = 0;
  absl::Status broken_;
  bool awaiting_combine_ = false;  // a dispatch was received and not yet answered
  int last_layer_ = -1;
  int64_t last_n_ = 0;
  int64_t last_hidden_ = 0;
  std::vector<float> x_;         // [n, hidden]
  std::vector<int32_t> expert_;  // [n, k]
  std::vector<float> weight_;    // [n, k]
  std::atomic<int64_t> auth_refusals_{0};
};

}  // namespace dsv2
