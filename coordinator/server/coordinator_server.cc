#include "coordinator/server/coordinator_server.h"

#include <algorithm>
#include <filesystem>
#include <limits>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/gguf.h"
#include "common/gguf_model_config.h"
#include "common/grpc_tls.h"
#include "common/status_macros.h"
#include "coordinator/model/device_flags.h"
#include "coordinator/server/malformed_request_interceptor.h"
#include "coordinator/tokenizer/gguf_tokenizer.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/resource_quota.h"

namespace dsv2 {

absl::StatusOr<std::unique_ptr<CoordinatorServer>> CoordinatorServer::Start(
    const CoordinatorServerOptions& options) {
  std::unique_ptr<CoordinatorServer> s(new CoordinatorServer());
  const bool expert_parallel = !options.expert_parallel.workers.empty();
  if (!options.synthetic.empty()) {
    if (options.synthetic != "v2-lite") {
      return absl::InvalidArgumentError(
          absl::StrCat("--synthetic: '", options.synthetic, "' is not a known model (v2-lite)"));
    }
    if (expert_parallel) {
      return absl::InvalidArgumentError("--synthetic serves standalone only (no --workers)");
    }
    DSV2_ASSIGN_OR_RETURN(
        s->model_, DeepseekV2Model::Synthetic(ModelConfig::DeepSeekV2Lite(), options.placement));
  }
  WeightBindOptions bind;  // standalone: every routed expert is local
  std::optional<ExpertPlacement> placement;
  if (expert_parallel) {
    DSV2_ASSIGN_OR_RETURN(const ModelConfig config, LoadAnyModelConfig(options.model_dir));
    DSV2_ASSIGN_OR_RETURN(placement,
                          ExpertParallelBackend::PlacementFor(config, options.expert_parallel));
    bind.expert_begin = placement->Range(0).begin;
    bind.expert_end = placement->Range(0).end;
  }
  if (s->model_ == nullptr) {
    DSV2_ASSIGN_OR_RETURN(s->model_,
                          DeepseekV2Model::Load(options.model_dir, bind, options.placement));
  }
  if (options.synthetic.empty()) {
    absl::StatusOr<std::unique_ptr<Tokenizer>> tok = LoadModelTokenizer(options.model_dir);
    if (!tok.ok() && tok.status().code() != absl::StatusCode::kNotFound) return tok.status();
    if (tok.ok()) s->tokenizer_ = *std::move(tok);
  }
  if (s->tokenizer_ != nullptr) {
    if (s->tokenizer_->vocab_size() > s->model_->config().vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat(
          options.model_dir, ": tokenizer.json has ", s->tokenizer_->vocab_size(),
          " token ids but config.json's vocab_size is ", s->model_->config().vocab_size));
    }
  }
  if (expert_parallel) {
    s->expert_group_ = std::make_unique<ExpertParallelBackend>(
        *s->model_, options.expert_parallel, std::move(*placement),
        [server = s.get()](bool) { server->SyncHealth(); });
    s->model_->SetExpertBackend(s->expert_group_.get(), options.expert_parallel.micro_batches);
  }
  s->engine_ = std::make_unique<InferenceEngine>(*s->model_, s->tokenizer_.get(), options.engine);
  DSV2_RETURN_IF_ERROR(s->engine_->init_status());
  s->service_ = std::make_unique<InferenceService>(ServedModel{
      .model = s->model_.get(),
      .tokenizer = s->tokenizer_.get(),
      .engine = s->engine_.get(),
      .path = options.synthetic.empty() ? options.model_dir : "synthetic:" + options.synthetic,
      .device = DescribePlacement(*s->model_),
      .demo = options.demo,
      .expert_group = s->expert_group_.get()});
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  const std::string address = absl::StrCat(options.host, ":", options.port);
  DSV2_ASSIGN_OR_RETURN(std::shared_ptr<grpc::ServerCredentials> credentials,
                        MakeServerCredentials({.cert = options.tls_cert_file,
                                               .key = options.tls_key_file,
                                               .client_ca = options.tls_client_ca_file}));
  builder.AddListeningPort(address, credentials, &s->port_);
  builder.RegisterService(s->service_.get());
  builder.SetMaxReceiveMessageSize(static_cast<int>(
      std::min<int64_t>(options.max_request_bytes, std::numeric_limits<int>::max())));
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, options.max_concurrent_streams);
  grpc::ResourceQuota quota("dsv2-coordinator");
  quota.SetMaxThreads(options.max_rpc_threads);
  quota.Resize(static_cast<size_t>(options.rpc_memory_bytes));
  builder.SetResourceQuota(quota);
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
  interceptors.push_back(std::make_unique<MalformedRequestInterceptorFactory>());
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || s->port_ == 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", address,
                     options.tls_cert_file.empty()
                         ? ""
                         : " (with TLS: check that --tls-key is the key of --tls-cert)"));
  }
  {
    std::lock_guard<std::mutex> lock(s->health_mu_);
    s->server_ = std::move(server);
  }
  s->SyncHealth();
  if (options.http_port != 0) {
    std::string name = options.model_name;
    if (name.empty()) {
      name = !options.synthetic.empty()
                 ? "synthetic-" + options.synthetic
                 : std::filesystem::path(options.model_dir).lexically_normal().filename().string();
      if (name.empty()) name = "dsv2";
    }
    CoordinatorServer* self = s.get();
    s->openai_ = std::make_unique<OpenAiApi>(
        OpenAiApiOptions{.engine = s->engine_.get(),
                         .tokenizer = s->tokenizer_.get(),
                         .model_id = name,
                         .vocab_size = s->model_->config().vocab_size,
                         .serving = [self] { return self->Serving(); },
                         .extra_metrics = [self] { return self->ExpertMetrics(); }});
    OpenAiApi* api = s->openai_.get();
    DSV2_ASSIGN_OR_RETURN(
        s->http_,
        HttpServer::Start({.host = options.host,
                           .port = options.http_port,
                           .max_body_bytes = options.max_request_bytes,
                           .tls_cert_file = options.tls_cert_file,
                           .tls_key_file = options.tls_key_file,
                           .tls_client_ca_file = options.tls_client_ca_file},
                          [api](const HttpRequest& r, HttpResponder& o) { api->Handle(r, o); }));
  }
  return s;
}

std::string CoordinatorServer::ExpertMetrics() const {
  const ExpertParallelBackend* group = expert_group_.get();
  if (group == nullptr) return "";
  const CommStats comm = group->comm_stats();
  std::string m = absl::StrCat(
      "# HELP dsv2_expert_workers_serving Whether every expert worker serves.\n"
      "# TYPE dsv2_expert_workers_serving gauge\ndsv2_expert_workers_serving ",
      group->serving() ? 1 : 0,
      "\n# HELP dsv2_expert_exchange_bytes_total Expert-parallel data plane bytes, by worker.\n"
      "# TYPE dsv2_expert_exchange_bytes_total counter\n");
  for (const auto& [rank, r] : comm.ranks) {
    absl::StrAppend(&m, "dsv2_expert_exchange_bytes_total{worker=\"", rank,
                    "\",direction=\"sent\"} ", r.counters.bytes_sent, "\n",
                    "dsv2_expert_exchange_bytes_total{worker=\"", rank,
                    "\",direction=\"received\"} ", r.counters.bytes_received, "\n");
  }
  absl::StrAppend(&m,
                  "# HELP dsv2_expert_exchange_seconds From a layer's dispatch to a worker's "
                  "combine.\n# TYPE dsv2_expert_exchange_seconds summary\n");
  for (const auto& [rank, r] : comm.ranks) {
    absl::StrAppend(&m, "dsv2_expert_exchange_seconds_sum{worker=\"", rank, "\"} ",
                    absl::StrFormat("%.6f", r.exchange_seconds_sum), "\n",
                    "dsv2_expert_exchange_seconds_count{worker=\"", rank, "\"} ", r.exchanges,
                    "\n");
  }
  const ExchangeOverlapStats overlap = group->overlap_stats();
  absl::StrAppend(
      &m,
      "# HELP dsv2_expert_exchange_away_seconds_total Seconds from a layer's tokens sent to every "
      "partial sum back.\n# TYPE dsv2_expert_exchange_away_seconds_total counter\n"
      "dsv2_expert_exchange_away_seconds_total ",
      absl::StrFormat("%.6f", overlap.away_seconds),
      "\n# HELP dsv2_expert_exchange_overlapped_seconds_total Of those, seconds the coordinator "
      "computed (its shard, the shared experts) instead of waiting.\n"
      "# TYPE dsv2_expert_exchange_overlapped_seconds_total counter\n"
      "dsv2_expert_exchange_overlapped_seconds_total ",
      absl::StrFormat("%.6f", overlap.overlapped_seconds), "\n");
  return m;
}

bool CoordinatorServer::Serving() {
  std::lock_guard<std::mutex> lock(health_mu_);
  return (expert_group_ == nullptr || expert_group_->serving()) && !shutting_down_ && !closing_;
}

CoordinatorServer::~CoordinatorServer() {
  Shutdown();
  Wait();
  // The engine thread and the expert group's supervisor call SyncHealth: stop them before the
  // server they report to goes away.
  engine_.reset();
  expert_group_.reset();
  std::lock_guard<std::mutex> lock(health_mu_);
  closing_ = true;
  server_.reset();
}

void CoordinatorServer::SyncHealth() {
  std::lock_guard<std::mutex> lock(health_mu_);
  // Read the state now rather than trusting the caller's view: reports from the engine thread
  // and from the supervisor can arrive out of order.
  const bool serving = expert_group_ == nullptr || expert_group_->serving();
  if (server_ != nullptr && !closing_) {
    server_->GetHealthCheckService()->SetServingStatus(serving && !shutting_down_);
  }
}

void CoordinatorServer::Shutdown() {
  if (http_ != nullptr) http_->Stop();
  {
    std::lock_guard<std::mutex> lock(health_mu_);
    if (server_ == nullptr || closing_) return;
    shutting_down_ = true;
    server_->GetHealthCheckService()->SetServingStatus(false);
  }
  // Running streams get a short grace period, then are cancelled.
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
}

int64_t CoordinatorServer::Drain(std::chrono::milliseconds timeout) {
  engine_->StopAdmitting();  // before health turns: a client that saw NOT_SERVING is refused
  {
    std::lock_guard<std::mutex> lock(health_mu_);
    if (server_ == nullptr || closing_) return 0;
    shutting_down_ = true;
    server_->GetHealthCheckService()->SetServingStatus(false);
  }
  const int64_t cut = engine_->Drain(timeout);
  Shutdown();
  return cut;
}

void CoordinatorServer::Wait() {
  if (server_ != nullptr) server_->Wait();
}

}  // namespace dsv2
