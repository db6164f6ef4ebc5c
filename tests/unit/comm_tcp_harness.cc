#include "tests/unit/comm_tcp_harness.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace dsv2::comm_testing {

absl::Status TcpCluster::Start() {
  std::vector<std::string> endpoints;
  results_.resize(world_size_ - 1);
  for (int r = 1; r < world_size_; ++r) {
    TcpWorkerOptions o = worker_options_;
    o.expected_rank = r;
    o.expected_world_size = world_size_;
    DSV2_ASSIGN_OR_RETURN(auto link, TcpExpertWorkerLink::Listen(0, o));
    endpoints.push_back(absl::StrCat("127.0.0.1:", link->port()));
    links_.push_back(std::move(link));
  }
  for (int r = 1; r < world_size_; ++r) threads_.emplace_back([this, r] { WorkerLoop(r); });
  DSV2_ASSIGN_OR_RETURN(dispatcher_, TcpExpertDispatcher::Connect(endpoints, options_));
  return absl::OkStatus();
}

const std::vector<WorkerResult>& TcpCluster::Join() {
  dispatcher_.reset();
  for (std::thread& t : threads_) t.join();
  threads_.clear();
  return results_;
}

void TcpCluster::WorkerLoop(int rank) {
  TcpExpertWorkerLink& link = *links_[rank - 1];
  WorkerResult& result = results_[rank - 1];
  result.end = link.WaitForCoordinator();
  if (!result.end.ok()) return;
  if (link.rank() != rank || link.world_size() != world_size_) {
    result.end = absl::InternalError(absl::StrCat("handshake gave rank ", link.rank()));
    return;
  }
  std::vector<float> partial;
  while (true) {
    absl::StatusOr<DispatchedTokens> got = link.ReceiveDispatch();
    if (!got.ok() && absl::IsDeadlineExceeded(got.status())) continue;  // idle
    if (!got.ok()) {
      result.end = got.status();
      return;
    }
    if (got->drain) {
      result.end = absl::OkStatus();
      return;
    }
    const int64_t n = got->n, k = got->k, hidden = got->hidden;
    if (script_.record) {
      result.layers.push_back({got->layer, n, k, hidden,
                               std::vector<float>(got->x, got->x + n * hidden),
                               std::vector<int32_t>(got->expert, got->expert + n * k),
                               std::vector<float>(got->weight, got->weight + n * k)});
    }
    const Reply reply = script_.reply(rank, got->layer);
    if (reply == Reply::kClose) {
      link.Close();
      result.end = absl::AbortedError("closed by the test script");
      return;
    }
    if (reply == Reply::kSilent) continue;  // never answers: the next receive sees the fallout
    partial.resize(n * hidden);
    for (int64_t i = 0; i < n; ++i) {
      script_.row(rank, got->x + i * hidden, got->expert + i * k, got->weight + i * k, k, hidden,
                  partial.data() + i * hidden);
    }
    absl::SleepFor(script_.delay(rank));
    result.end = link.SendCombine(got->layer, partial.data(), n, hidden);
    if (!result.end.ok()) return;
  }
}

}  // namespace dsv2::comm_testing
