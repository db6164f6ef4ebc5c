// The coordinator side of the TCP transport: a persistent connection to every worker, opened
// once by Connect (the coordinator dials, the workers listen: see tcp_worker_link.h).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/cluster_auth.h"
#include "common/comm/communicator.h"

namespace dsv2 {

struct TcpDispatcherOptions {
  // Connect keeps retrying a worker that does not listen yet until this passes, handshake included.
  absl::Duration connect_timeout = absl::Seconds(30);
  // The longest one Dispatch, Combine (worker compute included) or Drain may take; a worker
  // that has not finished its part by then is reported UNAVAILABLE.
  absl::Duration timeout = absl::Seconds(10);
  // A frame announcing a larger payload is a protocol error.
  int64_t max_frame_bytes = int64_t{4} << 30;
  // When enabled, answer each worker's handshake challenge with the proof (cluster_auth.h), and
  // refuse a worker that issues none (it does not hold the secret).
  ClusterSecret secret = {};
};

class TcpExpertDispatcher final : public ExpertDispatcher {
 public:
  // worker_endpoints[i] ("host:port" or "[v6 address]:port") becomes rank i + 1; the world size
  // is worker_endpoints.size() + 1. Each worker is told its rank and the world size in a
  // handshake and must echo them back (it may refuse a rank it does not expect).
  static absl::StatusOr<std::unique_ptr<TcpExpertDispatcher>> Connect(
      const std::vector<std::string>& worker_endpoints, const TcpDispatcherOptions& options = {});
  ~TcpExpertDispatcher() override;

  int world_size() const override;
  absl::Status Dispatch(int layer, const DispatchLayout& layout, const float* x,
                        int64_t hidden) override;
  absl::Status Combine(int layer, const DispatchLayout& layout, float* out,
                       int64_t hidden) override;
  absl::Status Drain() override;
  CommStats stats() const override;

 private:
  struct Impl;
  struct Peer;
  explicit TcpExpertDispatcher(const TcpDispatcherOptions& options);

  absl::Status ConnectPeer(Peer& peer, int world_size, uint64_t session, absl::Time deadline);
  absl::Status CheckCall(const DispatchLayout& layout, const void* data, int64_t hidden) const;
  // Runs what the call started on every peer until each has finished or the timeout passed,
  // and turns the peers' outcomes into one status (the dispatcher breaks on failure).
  absl::Status RunExchange(const std::string& what);
  void Finish(Peer& peer, absl::Status status);
  void FoldCombined(const DispatchLayout& layout, float* out, int64_t hidden);
  // Adds `delta` to the totals and, for layer >= 0, to that layer.
  void Count(int layer, const CommCounters& delta, int rank = -1);
  void CountExchange(int rank, double seconds);

  TcpDispatcherOptions options_;
  std::unique_ptr<Impl> impl_;
  absl::Status broken_;  // sticky: set by the first failure, or by Drain
  mutable std::mutex stats_mu_;
  CommStats stats_;
  std::chrono::steady_clock::time_point dispatch_start_;  // of the layer being exchanged
};

}  // namespace dsv2
