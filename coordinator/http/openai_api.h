// The OpenAI-compatible HTTP API over the InferenceEngine (the same engine as gRPC):
//   POST /v1/completions, POST /v1/chat/completions  (stream: server-sent events, [DONE] last)
//   GET /v1/models, GET /health (200 only while serving), GET /metrics (Prometheus text)
// JSON is read and written with nlohmann::json (Debian's nlohmann-json3-dev: header-only,
// maintained, and its non-throwing parse keeps exceptions away from the connection threads).
// Errors use OpenAI's shape {"error": {"message", "type", "param", "code"}} with 400 naming the
// parameter, 404 for an unknown model or path, 413 for an oversized body, 429 for a full queue,
// 503 while draining or when an expert worker is lost; bad input never gets a 500.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>

#include "coordinator/http/http_server.h"
#include "coordinator/serving/inference_engine.h"
#include "coordinator/tokenizer/tokenizer.h"

namespace dsv2 {

struct OpenAiApiOptions {
  InferenceEngine* engine = nullptr;
  const Tokenizer* tokenizer = nullptr;  // null: prompts must be token ids, no chat
  std::string model_id;                  // what /v1/models lists and requests must name
  int64_t vocab_size = 0;
  // True while the server serves (health SERVING): the engine, and every expert worker.
  std::function<bool()> serving;
  // Extra Prometheus text appended to /metrics (e.g. the expert-parallel data plane).
  std::function<std::string()> extra_metrics;
};

class OpenAiApi {
 public:
  explicit OpenAiApi(OpenAiApiOptions options) : o_(std::move(options)) {}
  // The HttpHandler: routes one request.
  void Handle(const HttpRequest& request, HttpResponder& out);

 private:
  void Generate(const std::string& body, bool chat, HttpResponder& out);
  std::string Metrics() const;

  OpenAiApiOptions o_;
  std::atomic<uint64_t> next_id_{1};
  std::atomic<int64_t> http_ok_{0}, http_client_error_{0}, http_server_error_{0};
};

}  // namespace dsv2
