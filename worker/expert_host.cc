#include "worker/expert_host.h"

#include <cstdio>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/checkpoint_fingerprint.h"
#include "common/gguf_model_config.h"
#include "common/status_macros.h"
#if DSV2_COMM_HAVE_NCCL
#include "common/comm/nccl/nccl_worker_link.h"
#endif

namespace dsv2 {

ExpertHost::ExpertHost(const ExpertHostOptions& options)
    : options_(options),
      ctx_(options.threads, DetectCpuIsa(),
           options.device == Device::kCpu ? options.dtype : DType::kF32) {}

absl::StatusOr<std::unique_ptr<ExpertHost>> ExpertHost::Create(const ExpertHostOptions& options) {
  std::unique_ptr<ExpertHost> h(new ExpertHost(options));
  if (IsGgufPath(options.model_dir)) {
    DSV2_ASSIGN_OR_RETURN(h->gguf_, GgufModel::Open(options.model_dir));
    DSV2_ASSIGN_OR_RETURN(h->config_, ModelConfigFromGguf(*h->gguf_));
    h->fingerprint_ = GgufFingerprint(h->config_, *h->gguf_);
  } else {
    DSV2_ASSIGN_OR_RETURN(h->config_, LoadModelConfig(options.model_dir));
    DSV2_ASSIGN_OR_RETURN(h->checkpoint_, Checkpoint::Open(options.model_dir));
    h->fingerprint_ = CheckpointFingerprint(h->config_, *h->checkpoint_);
  }
  if (options.device == Device::kCuda) {
    DSV2_ASSIGN_OR_RETURN(h->cuda_,
                          CudaContext::Create({.device = options.gpu, .act_dtype = options.dtype}));
  }
  TcpWorkerOptions link_options;
  link_options.idle_timeout = options.idle_timeout;
  link_options.timeout = options.timeout;
  link_options.accept_timeout = options.idle_timeout;
  link_options.expected_rank = options.rank;
  link_options.secret = options.secret;
  DSV2_ASSIGN_OR_RETURN(h->link_, TcpExpertWorkerLink::Listen(options.data_port, link_options));
  h->data_port_ = h->link_->port();
  h->loop_ = std::thread([host = h.get()] { host->LayerLoop(); });
  return h;
}

ExpertHost::~ExpertHost() {
  // The loop notices within one idle timeout (the link is not thread-safe to close from here).
  stop_ = true;
  // Create returns early (bad model folder, port in use) before the loop starts.
  if (loop_.joinable()) loop_.join();
}

std::string ExpertHost::device_name() const {
  if (cuda_ == nullptr) return "cpu";
  return absl::StrCat("cuda:", cuda_->info().device, " (", cuda_->info().name, ")");
}

grpc::Status ExpertHost::GetChallenge(grpc::ServerContext*, const v1::ChallengeRequest*,
                                      v1::Challenge* resp) {
  resp->set_auth_required(options_.secret.enabled());
  if (options_.secret.enabled()) resp->set_nonce(nonces_.Issue());
  return grpc::Status::OK;
}

grpc::Status ExpertHost::Authenticate(grpc::ServerContext* context, std::string_view method,
                                      const google::protobuf::Message& request) {
  if (!options_.secret.enabled()) return grpc::Status::OK;
  auto refuse = [&](const std::string& why) {
    ++auth_refusals_;
    std::fprintf(stderr, "dsv2-worker rank %d: refused %s from %s: %s\n", options_.rank,
                 std::string(method).c_str(), context->peer().c_str(), why.c_str());
    return grpc::Status(
        grpc::StatusCode::UNAUTHENTICATED,
        absl::StrCat("cluster authentication failed at worker rank ", options_.rank, ": ", why));
  };
  const auto& md = context->client_metadata();
  const auto nonce = md.find(kAuthNonceKey);
  const auto mac = md.find(kAuthMacKey);
  if (nonce == md.end() || mac == md.end()) {
    return refuse("this worker holds a cluster secret and the call carried no credentials");
  }
  const std::string nonce_bytes(nonce->second.data(), nonce->second.size());
  if (absl::Status spent = nonces_.Spend(nonce_bytes); !spent.ok()) {
    return refuse(std::string(spent.message()));
  }
  std::string bytes;
  request.SerializeToString(&bytes);
  if (!options_.secret.Verify(method, nonce_bytes, bytes,
                              std::string_view(mac->second.data(), mac->second.size()))) {
    return refuse("wrong MAC: the caller does not hold this cluster's secret");
  }
  return grpc::Status::OK;
}

grpc::Status ExpertHost::Configure(grpc::ServerContext* context, const v1::ConfigureRequest* req,
                                   v1::ConfigureResponse* resp) {
  if (grpc::Status auth = Authenticate(context, "Configure", *req); !auth.ok()) return auth;
  auto refuse = [](const std::string& why) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, why);
  };
  if (req->rank() != options_.rank) {
    return refuse(absl::StrCat("this worker is rank ", options_.rank,
                               " but the coordinator configured rank ", req->rank(),
                               " (check the order of --workers)"));
  }
  if (req->checkpoint_fingerprint() != fingerprint_) {
    return refuse(absl::StrCat("checkpoint mismatch: worker rank ", options_.rank, " serves ",
                               options_.model_dir, " (fingerprint ", fingerprint_,
                               "), the coordinator's fingerprint is ",
                               req->checkpoint_fingerprint()));
  }
  const std::string ours = PrecisionName(options_.dtype);
  const std::string theirs = req->dtype().empty() ? "float32" : req->dtype();
  if (theirs != ours) {
    return refuse(absl::StrCat("dtype mismatch: the coordinator computes in ", theirs,
                               ", worker rank ", options_.rank, " in ", ours,
                               " (start both with the same --dtype)"));
  }
  const bool nccl = req->transport() == "nccl";
  if (nccl) {
    if (!kNcclTransportBuilt) {
      return refuse(
          absl::StrCat("worker rank ", options_.rank,
                       " was built without NCCL: use --transport tcp on the coordinator"));
    }
    if (cuda_ == nullptr) {
      return refuse(absl::StrCat("worker rank ", options_.rank,
                                 " computes on the CPU: the NCCL transport needs every rank on a "
                                 "GPU (start it with --device cuda, or use --transport tcp)"));
    }
    if (req->nccl_unique_id().size() != kNcclUniqueIdBytes) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          absl::StrCat("nccl_unique_id has ", req->nccl_unique_id().size(),
                                       " bytes; an ncclUniqueId has ", kNcclUniqueIdBytes));
    }
    if (req->world_size() < 2 || req->rank() >= req->world_size()) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          absl::StrCat("rank ", req->rank(), " of world size ", req->world_size()));
    }
  } else if (req->transport() != "tcp") {
    return refuse(absl::StrCat("transport '", req->transport(),
                               "' is not one this worker knows (tcp, nccl)"));
  }
  std::shared_ptr<HostedShard> shard;
  {
    std::lock_guard<std::mutex> lock(mu_);
    shard = shard_;
  }
  if (shard == nullptr || shard->host.begin != req->expert_begin() ||
      shard->host.end != req->expert_end()) {
    absl::StatusOr<ExpertShard> bound =
        gguf_ != nullptr
            ? BindGgufExpertShard(config_, *gguf_, req->expert_begin(), req->expert_end())
            : BindExpertShard(config_, *checkpoint_, req->expert_begin(), req->expert_end());
    if (!bound.ok()) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          std::string(bound.status().message()));
    }
    shard = std::make_shared<HostedShard>();
    shard->host = std::move(*bound);
    if (cuda_ != nullptr) {
      // Only this shard's experts are read (their pages of the mmap'ed checkpoint).
      absl::StatusOr<std::unique_ptr<CudaExpertShard>> uploaded =
          CudaExpertShard::Upload(shard->host, *cuda_);
      if (!uploaded.ok()) {
        return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                            absl::StrCat("worker rank ", options_.rank,
                                         ": uploading the expert shard to the GPU failed: ",
                                         uploaded.status().message()));
      }
      shard->gpu = *std::move(uploaded);
    }
    std::fprintf(stderr, "dsv2-worker rank %d: hosting experts [%lld, %lld), %.2f GB on %s\n",
                 options_.rank, static_cast<long long>(shard->host.begin),
                 static_cast<long long>(shard->host.end), shard->host.bytes / 1e9,
                 cuda_ != nullptr ? cuda_->info().name.c_str() : "the CPU");
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    shard_ = shard;
    session_ = req->session();
    nccl_session_.reset();
    if (nccl) {
      nccl_session_ = NcclSession{.unique_id = req->nccl_unique_id(),
                                  .world_size = req->world_size(),
                                  .session = req->session()};
    }
  }
  ++configure_count_;
  resp->set_rank(options_.rank);
  resp->set_checkpoint_fingerprint(fingerprint_);
  resp->set_expert_begin(shard->host.begin);
  resp->set_expert_end(shard->host.end);
  resp->set_data_port(data_port_);
  resp->set_shard_bytes(shard->host.bytes);
  resp->set_device(cuda_ != nullptr ? absl::StrCat("cuda:", cuda_->info().device) : "cpu");
  resp->set_dtype(ours);
  if (cuda_ != nullptr) resp->set_gpu_uuid(cuda_->info().uuid);
  resp->set_nccl(kNcclTransportBuilt);
  return grpc::Status::OK;
}

grpc::Status ExpertHost::GetWorkerStatus(grpc::ServerContext* context,
                                         const v1::WorkerStatusRequest* req,
                                         v1::WorkerStatus* resp) {
  if (grpc::Status auth = Authenticate(context, "GetWorkerStatus", *req); !auth.ok()) return auth;
  std::lock_guard<std::mutex> lock(mu_);
  resp->set_rank(options_.rank);
  resp->set_state(state_);
  resp->set_session(session_);
  if (shard_ != nullptr) {
    resp->set_expert_begin(shard_->host.begin);
    resp->set_expert_end(shard_->host.end);
  }
  resp->set_layers_served(layers_served_);
  resp->set_checkpoint_fingerprint(fingerprint_);
  resp->set_auth_refusals(auth_refusals_ + link_->auth_refusals());  // control + data plane
  return grpc::Status::OK;
}

std::optional<ExpertHost::NcclSession> ExpertHost::TakeNcclSession() {
  std::lock_guard<std::mutex> lock(mu_);
  std::optional<NcclSession> s = std::move(nccl_session_);
  nccl_session_.reset();
  return s;
}

absl::Status ExpertHost::ServeNccl(const NcclSession& session) {
#if DSV2_COMM_HAVE_NCCL
  NcclOptions nccl;
  nccl.device = options_.gpu;
  nccl.stream = nullptr;  // its own stream: a posted header receive must not block the shard's
  nccl.timeout = options_.timeout;
  nccl.idle_timeout = options_.idle_timeout;
  std::fprintf(stderr,
               "dsv2-worker rank %d: joining the NCCL communicator of session %llu (%d ranks)\n",
               options_.rank, static_cast<unsigned long long>(session.session), session.world_size);
  DSV2_ASSIGN_OR_RETURN(
      std::unique_ptr<NcclExpertWorkerLink> link,
      NcclExpertWorkerLink::Create(session.unique_id, options_.rank, session.world_size, nccl));
  {
    std::lock_guard<std::mutex> lock(mu_);
    state_ = "serving";
  }
  // Dropping the link finalizes (or, when broken, aborts) this rank's communicator.
  return ServeCoordinator(*link, /*device_rows=*/true, [&link] { link->Abort(); });
#else
  (void)session;
  return absl::FailedPreconditionError("this worker was built without NCCL");
#endif
}

void ExpertHost::LayerLoop() {
  while (!stop_) {
    if (std::optional<NcclSession> nccl = TakeNcclSession(); nccl.has_value()) {
      const absl::Status ended = ServeNccl(*nccl);
      {
        std::lock_guard<std::mutex> lock(mu_);
        state_ = "waiting";
      }
      if (!stop_) {
        std::fprintf(stderr, "dsv2-worker rank %d: NCCL session ended: %s\n", options_.rank,
                     ended.ok() ? "drained" : std::string(ended.message()).c_str());
      }
      continue;
    }
    // TCP: wait (at most the idle timeout, then look for an NCCL session again) for the
    // coordinator to connect to the data port.
    const absl::Status accepted = link_->WaitForCoordinator();
    if (stop_) return;
    if (!accepted.ok()) {
      if (accepted.code() != absl::StatusCode::kDeadlineExceeded) {
        std::fprintf(stderr, "dsv2-worker rank %d: %s\n", options_.rank,
                     std::string(accepted.message()).c_str());
      }
      continue;
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      state_ = "serving";
    }
    const absl::Status ended =
        ServeCoordinator(*link_, /*device_rows=*/false, [this] { link_->Close(); });
    {
      std::lock_guard<std::mutex> lock(mu_);
      state_ = "waiting";
    }
    if (!stop_) {
      std::fprintf(stderr, "dsv2-worker rank %d: coordinator session ended: %s\n", options_.rank,
                   ended.ok() ? "drained" : std::string(ended.message()).c_str());
    }
  }
}

absl::Status ExpertHost::ServeCoordinator(ExpertWorkerLink& link, bool device_rows,
                                          const std::function<void()>& close) {
  const uint64_t configured_at_accept = configure_count_;
  std::vector<float> partial;
  while (!stop_) {
    absl::StatusOr<DispatchedTokens> got = link.ReceiveDispatch();
    if (!got.ok()) {
      if (got.status().code() == absl::StatusCode::kDeadlineExceeded) {  // idle
        if (configure_count_ != configured_at_accept) {
          // A coordinator configured this worker after this link was opened: this link's
          // coordinator is gone (or replaced) without closing its socket. Make room.
          close();
          return absl::UnavailableError("superseded by a newer Configure");
        }
        continue;
      }
      return got.status();
    }
    if (got->drain) return absl::OkStatus();
    std::shared_ptr<HostedShard> shard;
    {
      std::lock_guard<std::mutex> lock(mu_);
      shard = shard_;
    }
    if (shard == nullptr || got->layer < 0 ||
        got->layer >= static_cast<int>(shard->host.layers.size()) ||
        (device_rows && shard->gpu == nullptr)) {
      close();
      return absl::FailedPreconditionError(
          absl::StrCat("dispatch for layer ", got->layer, " before Configure or out of range"));
    }
    if (device_rows) {  // NCCL: rows and partial sums stay on the GPU
      absl::StatusOr<const float*> sums = shard->gpu->ForwardOnDevice(*got);
      if (!sums.ok()) return sums.status();
      DSV2_RETURN_IF_ERROR(link.SendCombine(got->layer, *sums, got->n, got->hidden));
      ++layers_served_;
      continue;
    }
    partial.assign(got->n * got->hidden, 0.0f);  // [n, hidden]
    if (shard->gpu != nullptr) {
      if (absl::Status s = shard->gpu->Forward(*got, partial.data()); !s.ok()) {
        close();
        return s;
      }
    } else {
      RoutedExpertsForward(
          ctx_, shard->host.layers[got->layer], shard->host.begin,
          {.n_tokens = got->n, .top_k = got->k, .expert = got->expert, .weight = got->weight},
          got->x, got->hidden, partial.data());
    }
    DSV2_RETURN_IF_ERROR(link.SendCombine(got->layer, partial.data(), got->n, got->hidden));
    ++layers_served_;
  }
  return absl::OkStatus();
}

}  // namespace dsv2
