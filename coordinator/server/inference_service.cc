#include "coordinator/server/inference_service.h"

#include <chrono>

#include "coordinator/server/request_conversion.h"

namespace dsv2 {
namespace {

// How often a waiting handler checks whether its client went away.
constexpr std::chrono::milliseconds kPollInterval(20);

}  // namespace

grpc::Status InferenceService::Generate(grpc::ServerContext* context,
                                        const v1::GenerateRequest* request,
                                        grpc::ServerWriter<v1::GenerateResponse>* writer) {
  if (served_.expert_group != nullptr && !served_.expert_group->serving()) {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                        std::string(served_.expert_group->status().message()));
  }
  absl::StatusOr<GenerationRequest> converted = ToGenerationRequest(*request, served_.tokenizer);
  if (!converted.ok()) return ToGrpcStatus(converted.status());
  // The client's deadline, if any, bounds the sequence's life in the engine too.
  const auto deadline = context->deadline();
  if (deadline != std::chrono::system_clock::time_point::max()) {
    converted->deadline = SteadyClock::now() + (deadline - std::chrono::system_clock::now());
  }
  if (converted->request_id.empty()) {
    converted->request_id = "req-" + std::to_string(next_request_number_.fetch_add(1));
  }
  const std::string request_id = converted->request_id;
  absl::StatusOr<std::shared_ptr<RequestStream>> stream =
      served_.engine->Submit(std::move(*converted));
  if (!stream.ok()) return ToGrpcStatus(stream.status());
  GenerationEvent event;
  while (true) {
    if (!(*stream)->Pop(&event, kPollInterval)) {
      if (context->IsCancelled()) {
        (*stream)->Cancel();
        return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled by the client");
      }
      continue;
    }
    if (event.final && !event.error.ok()) return ToGrpcStatus(event.error);
    if (!writer->Write(ToResponse(event, request_id, served_.tokenizer))) {
      (*stream)->Cancel();
      return grpc::Status(grpc::StatusCode::CANCELLED, "the client stopped reading");
    }
    if (event.final) return grpc::Status::OK;
  }
}

grpc::Status InferenceService::Tokenize(grpc::ServerContext*, const v1::TokenizeRequest* request,
                                        v1::TokenizeResponse* response) {
  absl::StatusOr<std::vector<int32_t>> ids;
  const bool add_special = request->has_add_special_tokens() ? request->add_special_tokens() : true;
  switch (request->input_case()) {
    case v1::TokenizeRequest::kText:
      ids = EncodeText(served_.tokenizer, request->text(), add_special, "text");
      break;
    case v1::TokenizeRequest::kChat:
      ids = EncodeChat(served_.tokenizer, request->chat(), "chat");
      break;
    case v1::TokenizeRequest::INPUT_NOT_SET:
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "input: set text or chat");
  }
  if (!ids.ok()) return ToGrpcStatus(ids.status());
  for (int32_t id : *ids) {
    response->add_ids(id);
    response->add_tokens(served_.tokenizer->IdToToken(id).value_or(""));
  }
  return grpc::Status::OK;
}

grpc::Status InferenceService::GetModelInfo(grpc::ServerContext*, const v1::GetModelInfoRequest*,
                                            v1::ModelInfo* info) {
  const ModelConfig& c = served_.model->config();
  const InferenceEngineOptions& o = served_.engine->options();
  info->set_model_path(served_.path);
  info->set_model_type("deepseek_v2");
  info->set_demo_model(served_.demo);
  info->set_vocab_size(c.vocab_size);
  info->set_num_layers(c.num_hidden_layers);
  info->set_hidden_size(c.hidden_size);
  info->set_n_routed_experts(c.n_routed_experts);
  info->set_num_experts_per_tok(c.num_experts_per_tok);
  info->set_max_context_tokens(o.max_context);
  info->set_max_new_tokens_limit(o.max_new_tokens_limit);
  info->set_device(served_.device);
  info->set_dtype(PrecisionName(served_.model->dtype()));
  info->set_weight_bytes(served_.model->weight_bytes());
  info->set_has_tokenizer(served_.tokenizer != nullptr);
  const EngineStats s = served_.engine->Stats();
  v1::SchedulerStats* out = info->mutable_stats();
  out->set_running_sequences(s.running);
  out->set_waiting_requests(s.waiting);
  out->set_cache_pages_total(s.pages_total);
  out->set_cache_pages_free(s.pages_free);
  out->set_page_size(s.page_size);
  info->set_cache_bytes(s.pages_total * served_.model->CachePageBytes(s.page_size));
  out->set_requests_finished(s.finished);
  out->set_requests_cancelled(s.cancelled);
  out->set_preemptions(s.preemptions);
  out->set_steps(s.steps);
  out->set_requests_expired(s.expired);
  out->set_requests_failed(s.failed);
  out->set_prefix_caching(served_.engine->options().prefix_caching);
  out->set_prefix_cache_queries(s.prefix_cache_queries);
  out->set_prefix_cache_hits(s.prefix_cache_hits);
  out->set_cache_pages_cached(s.pages_cached);
  if (const ExpertParallelBackend* group = served_.expert_group; group != nullptr) {
    v1::ExpertParallelInfo* ep = info->mutable_expert_parallel();
    const ExpertPlacement& p = group->placement();
    ep->set_world_size(p.world_size());
    for (int r = 0; r < p.world_size(); ++r) ep->add_expert_boundaries(p.Range(r).begin);
    ep->add_expert_boundaries(p.n_experts());
    ep->set_serving(group->serving());
    ep->set_status(std::string(group->status().message()));
    const CommStats comm = group->comm_stats();
    ep->set_bytes_sent(comm.total.bytes_sent);
    ep->set_bytes_received(comm.total.bytes_received);
    int64_t layers = 0;
    for (const auto& [layer, c] : comm.layers) layers += c.messages_sent;
    ep->set_layers_dispatched(layers);
    ep->set_tokens_routed(group->tokens_routed());
    const ExchangeOverlapStats overlap = group->overlap_stats();
    ep->set_exchange_away_seconds(overlap.away_seconds);
    ep->set_exchange_overlapped_seconds(overlap.overlapped_seconds);
    for (const std::string& w : group->workers()) ep->add_workers(w);
  }
  return grpc::Status::OK;
}

}  // namespace dsv2
