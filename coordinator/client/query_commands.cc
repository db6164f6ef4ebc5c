// dsv2-cli tokenize / info / health: the unary calls.
#include <cstdio>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "coordinator/client/cli_commands.h"
#include "grpc/health/v1/health.grpc.pb.h"

namespace dsv2::cli {
namespace {

int Failed(const char* what, const grpc::Status& status) {
  std::fprintf(stderr, "dsv2-cli: %s failed: %s\n", what, DescribeStatus(status).c_str());
  return kExitRpcFailed;
}

void Line(const char* key, const std::string& value) {
  std::printf("%-16s %s\n", absl::StrCat(key, ":").c_str(), value.c_str());
}

const char* YesNo(bool b) { return b ? "yes" : "no"; }

}  // namespace

int RunTokenize(const std::shared_ptr<grpc::Channel>& channel, const v1::TokenizeRequest& request,
                double timeout_s, InterruptWatcher* interrupts) {
  std::unique_ptr<v1::Inference::Stub> stub = v1::Inference::NewStub(channel);
  grpc::ClientContext context;
  SetTimeout(&context, timeout_s);
  interrupts->Watch(&context);
  v1::TokenizeResponse response;
  const grpc::Status status = stub->Tokenize(&context, request, &response);
  interrupts->Watch(nullptr);
  if (!status.ok()) return Failed("tokenize", status);
  std::printf("ids: %s\n", absl::StrJoin(response.ids(), " ").c_str());
  std::printf("%d tokens (index, id, token):\n", response.ids_size());
  for (int i = 0; i < response.ids_size(); ++i) {
    const std::string token = i < response.tokens_size() ? response.tokens(i) : "";
    std::printf("%6d %8d  %s\n", i, response.ids(i), QuoteForDisplay(token).c_str());
  }
  return kExitOk;
}

int RunInfo(const std::shared_ptr<grpc::Channel>& channel, double timeout_s,
            InterruptWatcher* interrupts) {
  std::unique_ptr<v1::Inference::Stub> stub = v1::Inference::NewStub(channel);
  grpc::ClientContext context;
  SetTimeout(&context, timeout_s);
  interrupts->Watch(&context);
  v1::ModelInfo info;
  const grpc::Status status = stub->GetModelInfo(&context, v1::GetModelInfoRequest(), &info);
  interrupts->Watch(nullptr);
  if (!status.ok()) return Failed("info", status);
  Line(
      "model",
      absl::StrCat(info.model_path(),
                   info.demo_model() ? "  (the built-in demo model, trained on Shakespeare)" : ""));
  Line("type", info.model_type());
  Line("device", info.device());
  Line("memory",
       absl::StrFormat("%.2f GB weights, %.2f GB latent KV cache (%s)", info.weight_bytes() / 1e9,
                       info.cache_bytes() / 1e9, info.dtype().empty() ? "float32" : info.dtype()));
  Line("tokenizer", YesNo(info.has_tokenizer()));
  Line("vocab size", absl::StrCat(info.vocab_size()));
  Line("layers", absl::StrCat(info.num_layers()));
  Line("hidden size", absl::StrCat(info.hidden_size()));
  Line("experts", absl::StrFormat("%d routed, %d per token", info.n_routed_experts(),
                                  info.num_experts_per_tok()));
  Line("max context", absl::StrCat(info.max_context_tokens(), " tokens"));
  Line("max new tokens", absl::StrCat(info.max_new_tokens_limit(), " tokens (limit)"));
  const v1::SchedulerStats& s = info.stats();
  Line("requests",
       absl::StrFormat("%d running, %d waiting, %d finished, %d cancelled, %d expired, %d failed",
                       s.running_sequences(), s.waiting_requests(), s.requests_finished(),
                       s.requests_cancelled(), s.requests_expired(), s.requests_failed()));
  Line("scheduler", absl::StrFormat("%d steps, %d preemptions", s.steps(), s.preemptions()));
  Line("kv cache", absl::StrFormat("%d of %d pages free (%d of them cached), %d tokens per page",
                                   s.cache_pages_free(), s.cache_pages_total(),
                                   s.cache_pages_cached(), s.page_size()));
  Line("prefix cache",
       s.prefix_caching()
           ? absl::StrFormat("on: %d of %d prompt tokens looked up were cached (%.1f%%)",
                             s.prefix_cache_hits(), s.prefix_cache_queries(),
                             s.prefix_cache_queries() > 0
                                 ? 100.0 * s.prefix_cache_hits() / s.prefix_cache_queries()
                                 : 0.0)
           : std::string("off"));
  if (info.has_expert_parallel()) {
    const v1::ExpertParallelInfo& ep = info.expert_parallel();
    Line("expert parallel",
         absl::StrFormat("world %d (%s), %s%s", ep.world_size(), absl::StrJoin(ep.workers(), ", "),
                         ep.serving() ? "serving" : "NOT serving: ", ep.status()));
    Line("expert shards", absl::StrJoin(ep.expert_boundaries(), " | "));
    const double per_token_layer =
        ep.tokens_routed() > 0 ? static_cast<double>(ep.bytes_sent()) / ep.tokens_routed() : 0;
    Line(
        "data plane",
        absl::StrFormat("%d bytes sent, %d received, %d tokens routed over MoE layers: %.0f "
                        "bytes sent per token per layer",
                        ep.bytes_sent(), ep.bytes_received(), ep.tokens_routed(), per_token_layer));
    if (ep.exchange_away_seconds() > 0) {
      Line("exchange hidden",
           absl::StrFormat("%.1f%% (%.3f s of %.3f s with the tokens away spent computing the "
                           "coordinator's shard and the shared experts)",
                           100 * ep.exchange_overlapped_seconds() / ep.exchange_away_seconds(),
                           ep.exchange_overlapped_seconds(), ep.exchange_away_seconds()));
    }
  }
  return kExitOk;
}

int RunHealth(const std::shared_ptr<grpc::Channel>& channel, double timeout_s,
              InterruptWatcher* interrupts) {
  std::unique_ptr<grpc::health::v1::Health::Stub> stub = grpc::health::v1::Health::NewStub(channel);
  grpc::ClientContext context;
  SetTimeout(&context, timeout_s);
  interrupts->Watch(&context);
  grpc::health::v1::HealthCheckRequest request;
  request.set_service("");
  grpc::health::v1::HealthCheckResponse response;
  const grpc::Status status = stub->Check(&context, request, &response);
  interrupts->Watch(nullptr);
  if (!status.ok()) {
    const bool unreachable = status.error_code() == grpc::StatusCode::UNAVAILABLE ||
                             status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED;
    std::printf("%s\n", unreachable ? "UNREACHABLE" : "UNKNOWN");
    std::fprintf(stderr, "dsv2-cli: health check failed: %s\n", DescribeStatus(status).c_str());
    return unreachable ? 2 : 1;
  }
  std::printf("%s\n",
              grpc::health::v1::HealthCheckResponse::ServingStatus_Name(response.status()).c_str());
  return response.status() == grpc::health::v1::HealthCheckResponse::SERVING ? 0 : 1;
}

}  // namespace dsv2::cli
