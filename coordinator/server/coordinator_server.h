// A running standalone coordinator: model, tokenizer, engine and the gRPC server with the
// Inference service, the standard health service and server reflection. dsv2-coordinator is a
// thin main over it; the end-to-end tests start one in process.
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <string>

#include "absl/status/statusor.h"
#include "coordinator/expert_parallel/expert_parallel_backend.h"
#include "coordinator/http/http_server.h"
#include "coordinator/http/openai_api.h"
#include "coordinator/model/deepseek_v2_model.h"
#include "coordinator/server/inference_service.h"
#include "coordinator/serving/inference_engine.h"
#include "coordinator/tokenizer/tokenizer.h"
#include "grpcpp/grpcpp.h"

namespace dsv2 {

struct CoordinatorServerOptions {
  std::string model_dir;  // a checkpoint directory, optionally with tokenizer.json
  // "v2-lite": serve a random-weight DeepSeek-V2-Lite created in place (no model_dir, no
  // tokenizer: requests are token ids).
  std::string synthetic = "";
  bool demo = false;  // model_dir holds the built-in demo model (assets/demo-model)
  std::string host = "127.0.0.1";
  int port = 0;                   // 0: any free port
  ModelPlacement placement = {};  // CPU float32 by default
  // The OpenAI-compatible HTTP API and /health, /metrics on this port (0: off; dsv2-coordinator
  // defaults to 8000); model_name is what /v1/models lists (empty: the checkpoint's folder).
  int http_port = 0;
  std::string model_name = "";
  InferenceEngineOptions engine;
  // What one client may send: the largest request message (gRPC) or body (HTTP), and the streams
  // one connection may hold open at once (HTTP/2 MAX_CONCURRENT_STREAMS; more wait their turn).
  int64_t max_request_bytes = 4 << 20;
  int max_concurrent_streams = 256;
  // What all clients together may hold of the gRPC server: threads running handlers (one per
  // request being served; beyond it new calls get RESOURCE_EXHAUSTED) and transport memory
  // (buffers of open streams and connections; under pressure gRPC shrinks buffers and refuses
  // new streams).
  int max_rpc_threads = 512;
  int64_t rpc_memory_bytes = int64_t{1} << 30;
  // TLS on the gRPC API (PEM files; empty cert: plaintext). With client_ca_file, clients must
  // present a certificate it signed (mutual TLS).
  std::string tls_cert_file = "";
  std::string tls_key_file = "";
  std::string tls_client_ca_file = "";
  // Expert parallelism: workers' control addresses in rank order (empty: standalone).
  ExpertParallelOptions expert_parallel;
};

class CoordinatorServer {
 public:
  static absl::StatusOr<std::unique_ptr<CoordinatorServer>> Start(
      const CoordinatorServerOptions& options);
  ~CoordinatorServer();

  int port() const { return port_; }
  int http_port() const { return http_ != nullptr ? http_->port() : 0; }
  // What health says: the engine runs, every expert worker serves, and no shutdown began.
  bool Serving();
  const InferenceEngine& engine() const { return *engine_; }
  const DeepseekV2Model& model() const { return *model_; }
  bool has_tokenizer() const { return tokenizer_ != nullptr; }
  // Null in standalone mode.
  const ExpertParallelBackend* expert_group() const { return expert_group_.get(); }
  // Stops accepting calls, ends the running ones and returns; safe from any thread but a
  // signal handler.
  void Shutdown();
  // The graceful form (SIGTERM): health NOT_SERVING at once, new requests UNAVAILABLE, running
  // streams finish for up to `timeout`, the rest end UNAVAILABLE saying why; then Shutdown().
  // Returns the number of requests cut off.
  int64_t Drain(std::chrono::milliseconds timeout);
  void Wait();

 private:
  CoordinatorServer() = default;
  // Sets the health service to the current state (the expert group's, in that mode).
  void SyncHealth();
  // Prometheus text of the expert-parallel data plane (empty when standalone).
  std::string ExpertMetrics() const;

  std::unique_ptr<DeepseekV2Model> model_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<ExpertParallelBackend> expert_group_;  // outlives the engine that calls it
  std::unique_ptr<InferenceEngine> engine_;
  std::unique_ptr<InferenceService> service_;
  std::unique_ptr<OpenAiApi> openai_;
  std::unique_ptr<HttpServer> http_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  std::mutex health_mu_;  // guards server_ against SyncHealth from other threads
  bool shutting_down_ = false;
  bool closing_ = false;
};

}  // namespace dsv2
