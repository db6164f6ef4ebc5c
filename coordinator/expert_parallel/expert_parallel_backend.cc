#include "coordinator/expert_parallel/expert_parallel_backend.h"

#include <algorithm>
#include <chrono>
#include <cstdio>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/checkpoint_fingerprint.h"
#include "common/comm/dispatch_layout.h"
#include "common/comm/tcp/tcp_dispatcher.h"
#if DSV2_COMM_HAVE_NCCL
#include "common/comm/nccl/nccl_dispatcher.h"
#endif
#include "common/expert_shard.h"
#include "common/status_macros.h"
#include "dsv2/v1/worker.grpc.pb.h"
#include "grpcpp/grpcpp.h"

namespace dsv2 {
namespace {

void AddCounters(CommCounters& into, const CommCounters& c) {
  into.bytes_sent += c.bytes_sent;
  into.bytes_received += c.bytes_received;
  into.messages_sent += c.messages_sent;
  into.messages_received += c.messages_received;
}

void AddStats(CommStats& into, const CommStats& s) {
  for (const auto& [layer, c] : s.layers) AddCounters(into.layers[layer], c);
  AddCounters(into.total, s.total);
  for (const auto& [rank, r] : s.ranks) {
    RankCommStats& to = into.ranks[rank];
    AddCounters(to.counters, r.counters);
    to.exchange_seconds_sum += r.exchange_seconds_sum;
    to.exchanges += r.exchanges;
  }
}

// "host:port" → "host".
std::string HostOf(const std::string& endpoint) {
  const size_t colon = endpoint.rfind(':');
  return colon == std::string::npos ? endpoint : endpoint.substr(0, colon);
}

}  // namespace

absl::StatusOr<ExpertPlacement> ExpertParallelBackend::PlacementFor(
    const ModelConfig& config, const ExpertParallelOptions& options) {
  return ExpertPlacement::Contiguous(config.n_routed_experts,
                                     static_cast<int>(options.workers.size()) + 1,
                                     options.coordinator_hosts_experts);
}

ExpertParallelBackend::ExpertParallelBackend(const DeepseekV2Model& model,
                                             const ExpertParallelOptions& options,
                                             ExpertPlacement placement,
                                             std::function<void(bool)> on_serving)
    : model_(model),
      options_(options),
      placement_(std::move(placement)),
      fingerprint_(model.Fingerprint()),
      on_serving_(std::move(on_serving)) {
  supervisor_ = std::thread([this] { Supervise(); });
}

ExpertParallelBackend::~ExpertParallelBackend() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  supervisor_.join();
  std::lock_guard<std::mutex> lock(mu_);
  if (dispatcher_ != nullptr) dispatcher_->Drain().IgnoreError();  // workers go back to waiting
}

absl::Status ExpertParallelBackend::status() const {
  std::lock_guard<std::mutex> lock(mu_);
  return status_;
}

CommStats ExpertParallelBackend::comm_stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  CommStats s = retired_stats_;
  if (dispatcher_ != nullptr) AddStats(s, dispatcher_->stats());
  return s;
}

void ExpertParallelBackend::Supervise() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    if (!serving_) {
      lock.unlock();
      const absl::Status s = ConnectAll();
      lock.lock();
      if (!s.ok()) {
        if (s.message() != status_.message()) {
          std::fprintf(stderr, "dsv2-coordinator: expert workers: %s\n",
                       std::string(s.message()).c_str());
        }
        status_ = s;
      }
    }
    cv_.wait_for(lock, absl::ToChronoMilliseconds(options_.retry_interval), [&] { return stop_; });
  }
}

absl::StatusOr<v1::ConfigureResponse> ExpertParallelBackend::ConfigureWorker(
    int rank, uint64_t session, DataPlane plane, const std::string& nccl_unique_id) {
  const std::string& address = options_.workers[rank - 1];
  const std::string who = absl::StrCat("worker rank ", rank, " (", address, ")");
  auto stub = v1::ExpertWorker::NewStub(grpc::CreateChannel(
      address, options_.worker_credentials != nullptr ? options_.worker_credentials
                                                      : grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  // Configure binds the shard, and a GPU worker uploads it before answering (GBs for a real
  // model): a generous deadline. An unreachable worker still fails at once.
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
  std::string nonce;
  if (options_.secret.enabled()) {
    grpc::ClientContext challenge_ctx;
    challenge_ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    v1::Challenge challenge;
    const grpc::Status c = stub->GetChallenge(&challenge_ctx, {}, &challenge);
    if (!c.ok()) return absl::UnavailableError(absl::StrCat(who, ": ", c.error_message()));
    if (!challenge.auth_required()) {
      return absl::FailedPreconditionError(absl::StrCat(
          who,
          " holds no cluster secret while this coordinator does: start it with the same "
          "--cluster-secret-file (or DSV2_CLUSTER_SECRET)"));
    }
    nonce = challenge.nonce();
  }
  v1::ConfigureRequest req;
  req.set_rank(rank);
  req.set_world_size(placement_.world_size());
  const auto [begin, end] = placement_.Range(rank);
  req.set_expert_begin(begin);
  req.set_expert_end(end);
  req.set_checkpoint_fingerprint(fingerprint_);
  req.set_session(session);
  req.set_transport(DataPlaneName(plane));
  if (plane == DataPlane::kNccl) req.set_nccl_unique_id(nccl_unique_id);
  req.set_dtype(PrecisionName(model_.dtype()));
  if (options_.secret.enabled()) {
    std::string bytes;
    req.SerializeToString(&bytes);
    ctx.AddMetadata(kAuthNonceKey, nonce);
    ctx.AddMetadata(kAuthMacKey, options_.secret.Mac("Configure", nonce, bytes));
  }
  v1::ConfigureResponse resp;
  const grpc::Status s = stub->Configure(&ctx, req, &resp);
  if (!s.ok()) {
    const absl::StatusCode code = s.error_code() == grpc::StatusCode::FAILED_PRECONDITION ||
                                          s.error_code() == grpc::StatusCode::UNAUTHENTICATED
                                      ? absl::StatusCode::kFailedPrecondition
                                      : absl::StatusCode::kUnavailable;
    return absl::Status(code, absl::StrCat(who, ": ", s.error_message()));
  }
  if (resp.rank() != rank || resp.checkpoint_fingerprint() != fingerprint_ ||
      resp.expert_begin() != begin || resp.expert_end() != end) {
    return absl::FailedPreconditionError(
        absl::StrCat(who, " answered rank ", resp.rank(), ", experts [", resp.expert_begin(), ", ",
                     resp.expert_end(), "), checkpoint ", resp.checkpoint_fingerprint(),
                     "; expected rank ", rank, ", [", begin, ", ", end, "), ", fingerprint_));
  }
  return resp;
}

absl::StatusOr<std::unique_ptr<ExpertDispatcher>> ExpertParallelBackend::ConnectTcp(
    const std::vector<std::string>& data_endpoints) {
  TcpDispatcherOptions tcp;
  tcp.connect_timeout = absl::Seconds(10);
  tcp.timeout = options_.timeout;
  tcp.secret = options_.secret;
  absl::StatusOr<std::unique_ptr<TcpExpertDispatcher>> dispatcher =
      TcpExpertDispatcher::Connect(data_endpoints, tcp);
  if (!dispatcher.ok()) {
    return absl::UnavailableError(absl::StrCat("data plane: ", dispatcher.status().message()));
  }
  return std::unique_ptr<ExpertDispatcher>(std::move(*dispatcher));
}

absl::StatusOr<std::unique_ptr<ExpertDispatcher>> ExpertParallelBackend::ConnectNccl(
    uint64_t session, const std::string& unique_id) {
#if DSV2_COMM_HAVE_NCCL
  NcclOptions nccl;
  nccl.device = model_.cuda_context() != nullptr ? model_.cuda_context()->info().device : 0;
  nccl.stream = nullptr;  // its own stream; RemoteMoe hands over complete buffers
  nccl.init_timeout = absl::Seconds(60);
  nccl.timeout = options_.timeout;
  absl::StatusOr<std::unique_ptr<NcclExpertDispatcher>> dispatcher =
      NcclExpertDispatcher::Create(unique_id, placement_.world_size(), nccl);
  if (!dispatcher.ok()) {
    return absl::UnavailableError(
        absl::StrCat("NCCL data plane of session ", session, ": ", dispatcher.status().message()));
  }
  return std::unique_ptr<ExpertDispatcher>(std::move(*dispatcher));
#else
  (void)session;
  (void)unique_id;
  return absl::FailedPreconditionError("this coordinator was built without NCCL");
#endif
}

absl::Status ExpertParallelBackend::ConnectAll() {
  const int world = placement_.world_size();
  uint64_t session;
  {
    std::lock_guard<std::mutex> lock(mu_);
    session = ++session_;
  }
  // The data plane is chosen once, from the first answers (a coordinator restart chooses anew):
  // every worker is configured for TCP first, which tells where and on what it computes; NCCL
  // configures them again with the communicator's id.
  DataPlane plane = DataPlane::kTcp;
  const bool decided = data_plane_decided_;
  if (decided) plane = nccl_ ? DataPlane::kNccl : DataPlane::kTcp;
  std::string unique_id;
  if (plane == DataPlane::kNccl) {
    DSV2_ASSIGN_OR_RETURN(unique_id, NcclUniqueId());
  }
  std::vector<std::string> data_endpoints;
  std::vector<RankDevice> devices = {RankDevice{
      .gpu = model_.device() == Device::kCuda,
      .gpu_uuid = model_.cuda_context() != nullptr ? model_.cuda_context()->info().uuid : "",
      .nccl_built = kNcclTransportBuilt}};
  for (int rank = 1; rank < world; ++rank) {
    DSV2_ASSIGN_OR_RETURN(const v1::ConfigureResponse resp,
                          ConfigureWorker(rank, session, plane, unique_id));
    data_endpoints.push_back(
        absl::StrCat(HostOf(options_.workers[rank - 1]), ":", resp.data_port()));
    devices.push_back({.gpu = absl::StartsWith(resp.device(), "cuda"),
                       .gpu_uuid = resp.gpu_uuid(),
                       .nccl_built = resp.nccl()});
  }
  if (!decided) {
    DSV2_ASSIGN_OR_RETURN(plane, ChooseDataPlane(options_.transport, devices));
    if (plane == DataPlane::kNccl) {
      DSV2_ASSIGN_OR_RETURN(unique_id, NcclUniqueId());
      for (int rank = 1; rank < world; ++rank) {
        DSV2_RETURN_IF_ERROR(ConfigureWorker(rank, session, plane, unique_id).status());
      }
    }
    nccl_ = plane == DataPlane::kNccl;
    data_plane_decided_ = true;
    std::fprintf(stderr, "dsv2-coordinator: expert-parallel data plane: %s (--transport %s)\n",
                 DataPlaneName(plane), options_.transport.c_str());
  }
  DSV2_ASSIGN_OR_RETURN(
      std::unique_ptr<ExpertDispatcher> dispatcher,
      plane == DataPlane::kNccl ? ConnectNccl(session, unique_id) : ConnectTcp(data_endpoints));
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (dispatcher_ != nullptr) AddStats(retired_stats_, dispatcher_->stats());
    dispatcher_ = std::move(dispatcher);
    status_ = absl::OkStatus();
    serving_ = true;
  }
  std::fprintf(stderr, "dsv2-coordinator: %d expert workers connected over %s (session %llu)\n",
               world - 1, DataPlaneName(plane), static_cast<unsigned long long>(session));
  if (on_serving_) on_serving_(true);
  return absl::OkStatus();
}

absl::StatusOr<std::string> ExpertParallelBackend::NcclUniqueId() {
#if DSV2_COMM_HAVE_NCCL
  return NewNcclUniqueId();
#else
  return absl::FailedPreconditionError("this coordinator was built without NCCL");
#endif
}

void ExpertParallelBackend::MarkBroken(const absl::Status& why) {
  // Called with mu_ held.
  status_ = absl::UnavailableError(absl::StrCat("expert worker lost: ", why.message()));
  serving_ = false;
  if (dispatcher_ != nullptr) {
    AddStats(retired_stats_, dispatcher_->stats());
    dispatcher_.reset();
  }
  cv_.notify_all();
}

absl::Status ExpertParallelBackend::Run(const CpuContext& ctx, int64_t layer,
                                        const RouterSelection& sel, const float* x, int64_t hidden,
                                        float* out, const std::function<void()>& while_away) {
  using Clock = std::chrono::steady_clock;
  auto seconds = [](Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration<double>(b - a).count();
  };
  absl::Status result;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!serving_ || dispatcher_ == nullptr) return status_;
    absl::StatusOr<DispatchLayout> layout = DispatchLayout::Compute(
        placement_, sel.expert.data(), sel.weight.data(), sel.n_tokens, sel.top_k);
    if (!layout.ok()) return layout.status();
    const int tag = static_cast<int>(layer);
    tokens_routed_ += sel.n_tokens;
    const Clock::time_point start = Clock::now();
    result = dispatcher_->Dispatch(tag, *layout, x, hidden);
    if (result.ok()) {
      const Clock::time_point sent = Clock::now();
      // While the workers compute their shards: the coordinator's own shard (rank 0; its
      // partial goes into `out` first, then Combine adds ranks 1, 2, ... in order) and the
      // caller's independent work (the shared experts).
      // A GPU model runs its own shard on its device, in `while_away` (remote_moe.h).
      const MoeWeights& local = model_.weights().layers[layer].moe;
      if (!local.experts.empty() && model_.device() == Device::kCpu) {
        RoutedExpertsForward(ctx, local.experts, local.expert_begin,
                             {.n_tokens = sel.n_tokens,
                              .top_k = sel.top_k,
                              .expert = sel.expert.data(),
                              .weight = sel.weight.data()},
                             x, hidden, out);
      }
      if (while_away) while_away();
      const Clock::time_point worked = Clock::now();
      result = dispatcher_->Combine(tag, *layout, out, hidden);
      const Clock::time_point back = Clock::now();
      overlap_.layers += 1;
      overlap_.dispatch_seconds += seconds(start, sent);
      overlap_.away_seconds += seconds(sent, back);
      overlap_.overlapped_seconds += seconds(sent, worked);
      overlap_.waited_seconds += seconds(worked, back);
    }
    if (result.ok()) return result;
    MarkBroken(result);
    result = status_;
  }
  std::fprintf(stderr, "dsv2-coordinator: %s\n", std::string(result.message()).c_str());
  if (on_serving_) on_serving_(false);
  return result;
}

ExchangeOverlapStats ExpertParallelBackend::overlap_stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return overlap_;
}

}  // namespace dsv2
