// dsv2-coordinator: the standalone server. Serves dsv2.v1.Inference, grpc.health.v1.Health and
// server reflection over gRPC (and the OpenAI-compatible HTTP API). Without --model it serves
// the built-in demo model (assets/demo-model, a small V2 trained on Shakespeare).
#include <pthread.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/cli_flags.h"
#include "common/cluster_auth.h"
#include "common/comm/communicator.h"
#include "common/grpc_tls.h"
#include "common/startup_checks.h"
#include "coordinator/expert_parallel/lws_group.h"
#include "coordinator/model/device_flags.h"
#include "coordinator/server/coordinator_server.h"
#include "coordinator/server/demo_model.h"

ABSL_FLAG(std::string, model, "",
          "Checkpoint directory (config.json, *.safetensors, optionally tokenizer.json), or a "
          "deepseek2 GGUF file (FILE.gguf, or the first part of a split one; its tokenizer.json "
          "beside it). "
          "Empty: the built-in demo model, a small DeepSeek-V2 trained on Shakespeare "
          "(share/dsv2-serve/demo-model beside the programs, or $DSV2_DEMO_MODEL).");
ABSL_FLAG(std::string, synthetic, "",
          "Serve a random-weight model of a known shape created in place instead of a "
          "checkpoint: v2-lite (DeepSeek-V2-Lite at full size, 31.4 GB in bf16; for benchmarks "
          "and load tests on a GPU; requests must be token ids).");
ABSL_FLAG(std::string, host, "0.0.0.0", "Address to listen on.");
ABSL_FLAG(int, port, 50051, "Port of the gRPC API.");
ABSL_FLAG(int, http_port, 8000,
          "Port of the OpenAI-compatible HTTP API (/v1/completions, /v1/chat/completions, "
          "/v1/models) and of /health and /metrics; 0 turns HTTP off.");
ABSL_FLAG(std::string, served_model_name, "",
          "The model id of the HTTP API (/v1/models; requests must name it). Empty: the "
          "checkpoint folder's name.");
ABSL_FLAG(int, threads, 0, "CPU threads for the model (0: one per core).");
ABSL_FLAG(int64_t, max_batch_tokens, 256,
          "Token budget of one scheduler step: decode tokens of the running batch plus chunks "
          "of prompts (chunked prefill).");
ABSL_FLAG(int64_t, max_prefill_while_decoding, 64,
          "Prompt tokens one step may take while other sequences are decoding: lower keeps "
          "inter-token latency steady under new arrivals, higher gets first tokens sooner.");
ABSL_FLAG(int64_t, max_running, 64, "Sequences decoded together at most.");
ABSL_FLAG(int64_t, queue_capacity, 256,
          "Requests waiting for admission at most; beyond it Generate fails at once with "
          "RESOURCE_EXHAUSTED.");
ABSL_FLAG(int64_t, max_context, 0,
          "Prompt plus generated tokens of one request at most. 0: the model's own limit "
          "(max_position_embeddings: 163,840 for DeepSeek-V2-Lite) bounded by what the cache "
          "holds, at least 32,768 (a start-up line says what it came to).");
ABSL_FLAG(int64_t, cache_pages, 0,
          "Pages of 64 tokens of the latent KV cache (0: on a GPU, what --gpu-memory-fraction "
          "leaves after the weights; on the CPU, max_running / 4 sequences of max_context within "
          "a quarter of the free memory). At least one sequence of max_context.");
ABSL_FLAG(double, gpu_memory_fraction, 0.90,
          "With --cache-pages 0 on a GPU: the share of the device's memory the process may "
          "fill (weights, step workspace and the latent KV cache).");
ABSL_FLAG(int64_t, page_size, 64, "Tokens per cache page.");
ABSL_FLAG(int64_t, max_request_bytes, 4 << 20,
          "Largest request a client may send: a gRPC message or an HTTP body, in bytes; larger "
          "ones are refused (RESOURCE_EXHAUSTED / 413) before they are read into memory.");
ABSL_FLAG(int, max_concurrent_streams, 256,
          "Streams one client connection may have open at once (HTTP/2); more wait for one to "
          "end. Requests beyond --max-running wait in the queue (--queue-capacity) either way.");
ABSL_FLAG(int, max_rpc_threads, 512,
          "Threads the gRPC server may run handlers on, all clients together: one per request "
          "being served (streaming its tokens). Beyond it new calls get RESOURCE_EXHAUSTED. "
          "Keep it above --max-running + --queue-capacity.");
ABSL_FLAG(int64_t, rpc_memory_mb, 1024,
          "Memory the gRPC transport may hold for all connections and open streams together; "
          "under pressure it shrinks buffers and refuses new streams.");
ABSL_FLAG(std::string, cluster_secret_file, "",
          "With --workers: a file holding the cluster's shared secret (>= 16 bytes; else "
          "$DSV2_CLUSTER_SECRET, which a Kubernetes Secret can fill). Every call to a worker "
          "proves it holds the secret (HMAC-SHA-256 over a fresh nonce), and a worker without "
          "it is refused. Without one the control plane is open to anyone who reaches it.");
ABSL_FLAG(std::string, tls_cert, "",
          "PEM certificate (chain): serve the gRPC API and the HTTP API (--http-port) over TLS "
          "instead of plaintext. Needs --tls-key.");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls-cert.");
ABSL_FLAG(std::string, tls_client_ca, "",
          "PEM CA certificate(s): with --tls-cert, clients of both APIs must present a "
          "certificate signed by one of them (mutual TLS).");
ABSL_FLAG(std::string, worker_tls_ca, "",
          "With --workers: PEM CA that signed the workers' control-port certificates "
          "(dsv2-worker --tls-cert): Configure and status calls go over TLS. Empty: plaintext.");
ABSL_FLAG(std::string, worker_tls_cert, "",
          "With --worker-tls-ca: this coordinator's client certificate, for workers started with "
          "--tls-client-ca (mutual TLS). Needs --worker-tls-key.");
ABSL_FLAG(std::string, worker_tls_key, "", "PEM private key of --worker-tls-cert.");
ABSL_FLAG(int, max_stop_strings, 16,
          "Stop strings one request may give (each is matched after every token).");
ABSL_FLAG(int, max_stop_string_bytes, 256, "Bytes of one stop string at most.");
ABSL_FLAG(bool, enforce_eager, false,
          "On a GPU, run every step eagerly instead of replaying the decode steps from CUDA "
          "graphs captured per batch-size bucket (1, 2, 4, ..., 256).");
ABSL_FLAG(bool, prefix_caching, true,
          "Automatic prefix caching: full cache pages stay cached after their request, and a "
          "prompt that starts like an earlier one (same tokens, same cache_salt) reuses them "
          "instead of computing them again; least recently used pages are evicted when the "
          "cache is full. --prefix-caching=false computes every prompt in full.");
ABSL_FLAG(int32_t, default_max_new_tokens, 256, "max_new_tokens of requests that set none.");
ABSL_FLAG(int32_t, max_new_tokens_limit, 4096, "The largest max_new_tokens a request may ask.");
ABSL_FLAG(std::vector<std::string>, workers, {},
          "Expert parallelism: the dsv2-worker control addresses, comma-separated in rank order "
          "(host:port of rank 1, rank 2, ...), or `lws`: the workers of this pod's "
          "LeaderWorkerSet group (from LWS_LEADER_ADDRESS and LWS_GROUP_SIZE, port "
          "--lws-worker-port). The routed experts are split into contiguous shards over them; "
          "empty: standalone, all experts in this process.");
ABSL_FLAG(int, lws_worker_port, 50061, "With --workers lws: the workers' control port.");
ABSL_FLAG(std::string, transport, "auto",
          "With --workers: the data plane that carries the token activations. tcp: TCP between "
          "processes (any machines, CPU or GPU ranks, several ranks on one GPU; GPU activations "
          "are staged through pinned host buffers); nccl: NCCL between GPUs, every rank (this "
          "coordinator and each worker) on a GPU of its own; auto: nccl when the workers' first "
          "answers show that every rank has a GPU of its own and NCCL, else tcp.");
ABSL_FLAG(int, micro_batches, 1,
          "With --workers: 2 splits each step of two or more sequences into two micro-batches, "
          "so that one's attention runs while the other's tokens are with the workers (hides "
          "more of the exchange, at the cost of a second exchange per layer: worth it when the "
          "workers have cores or GPUs of their own); 1 runs each step as one batch.");
ABSL_FLAG(bool, coordinator_experts, false,
          "With --workers: this process hosts a shard of the experts too (as rank 0).");
ABSL_FLAG(double, drain_timeout, 30.0,
          "On SIGTERM/SIGINT: seconds the running streams may take to finish (health turns "
          "NOT_SERVING and new requests get UNAVAILABLE at once); the rest then end with "
          "UNAVAILABLE. Keep Kubernetes' terminationGracePeriodSeconds above it.");
ABSL_FLAG(double, worker_timeout, 5.0,
          "With --workers: seconds a worker may take to answer a layer before it counts as "
          "lost (its requests end with UNAVAILABLE and health turns NOT_SERVING until it "
          "rejoins).");

namespace {

int Fail(const std::string& msg) {
  std::fprintf(stderr, "dsv2-coordinator: %s\n", msg.c_str());
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  dsv2::ParseFlags(
      argc, argv,
      "The dsv2-serve standalone server (gRPC).\n"
      "  dsv2-coordinator --port 50051                 # the built-in demo model (Shakespeare)\n"
      "  dsv2-coordinator --model DIR --port 50051     # a real checkpoint");
  // Every numeric flag's range, then the ports: one line naming the flag, before anything loads.
  constexpr int64_t kBig = int64_t{1} << 40;
  static constexpr dsv2::FlagRange kRanges[] = {
      {"port", 0, 65535, "0: any free port"},
      {"http_port", 0, 65535, "0 turns HTTP off"},
      {"lws_worker_port", 1, 65535},
      {"threads", 0, 4096, "0: one per core"},
      {"max_batch_tokens", 1, 1 << 24},
      {"max_prefill_while_decoding", 0, 1 << 24},
      {"max_running", 1, 1 << 20},
      {"queue_capacity", 0, 1 << 24},
      {"max_context", 0, 1 << 24, "0: the model's own, bounded by memory"},
      {"cache_pages", 0, kBig, "0: sized from the memory"},
      {"gpu_memory_fraction", 0.01, 1.0},
      {"page_size", 1, 1 << 16},
      {"max_request_bytes", 1024, std::numeric_limits<int>::max()},
      {"max_concurrent_streams", 1, 1 << 20},
      {"max_rpc_threads", 8, 1 << 20},
      {"rpc_memory_mb", 16, 1 << 24},
      {"max_stop_strings", 0, 1 << 16},
      {"max_stop_string_bytes", 1, 1 << 20},
      {"default_max_new_tokens", 1, 1 << 24},
      {"max_new_tokens_limit", 1, 1 << 24},
      {"micro_batches", 1, 2},
      {"drain_timeout", 0, 86400, "seconds"},
      {"worker_timeout", 0.01, 3600, "seconds"},
  };
  if (absl::Status s = dsv2::CheckFlagRanges(kRanges); !s.ok()) {
    return Fail(std::string(s.message()));
  }
  if (absl::Status s =
          dsv2::CheckPortFree("port", absl::GetFlag(FLAGS_host), absl::GetFlag(FLAGS_port));
      !s.ok()) {
    return Fail(std::string(s.message()));
  }
  if (absl::Status s = dsv2::CheckPortFree("http_port", absl::GetFlag(FLAGS_host),
                                           absl::GetFlag(FLAGS_http_port));
      !s.ok()) {
    return Fail(std::string(s.message()));
  }
  std::vector<std::string> workers = absl::GetFlag(FLAGS_workers);
  if (workers.size() == 1 && workers[0] == "lws") {
    absl::StatusOr<std::vector<std::string>> lws =
        dsv2::LwsWorkerAddresses(std::getenv("LWS_LEADER_ADDRESS"), std::getenv("LWS_GROUP_SIZE"),
                                 absl::GetFlag(FLAGS_lws_worker_port));
    if (!lws.ok()) return Fail(std::string(lws.status().message()));
    workers = *std::move(lws);
    std::fprintf(stderr, "dsv2-coordinator: LeaderWorkerSet workers: %s\n",
                 absl::StrJoin(workers, ", ").c_str());
  }
  for (const std::string& w : workers) {  // host:port each, before anything waits for them
    const size_t colon = w.rfind(':');
    int port = 0;
    if (colon == std::string::npos || colon == 0 || !absl::SimpleAtoi(w.substr(colon + 1), &port) ||
        port < 1 || port > 65535) {
      return Fail(absl::StrCat("--workers: '", w, "' is not host:port (port 1..65535)"));
    }
  }
  const bool expert_parallel = !workers.empty();
  absl::StatusOr<dsv2::ClusterSecret> secret =
      dsv2::ClusterSecret::FromFileOrEnv(absl::GetFlag(FLAGS_cluster_secret_file));
  if (!secret.ok()) return Fail(std::string(secret.status().message()));
  bool open_cluster = false;  // warned about once serving
  if (expert_parallel && !secret->enabled()) {
    for (const std::string& w : workers) {
      if (!dsv2::IsLoopbackHost(w.substr(0, w.rfind(':')))) open_cluster = true;
    }
  }
  const std::string transport = absl::GetFlag(FLAGS_transport);
  if (transport != "auto" && transport != "tcp" && transport != "nccl") {
    return Fail(absl::StrCat("--transport '", transport, "': expected auto, tcp or nccl"));
  }
  absl::StatusOr<dsv2::ModelPlacement> placement = dsv2::PlacementFromFlags();
  if (!placement.ok()) return Fail(std::string(placement.status().message()));
  if (expert_parallel && transport == "nccl") {
    if (!dsv2::kNcclTransportBuilt) {
      return Fail("--transport nccl: this build has no NCCL (use --transport tcp or auto)");
    }
    if (placement->device != dsv2::Device::kCuda) {
      return Fail(
          "--transport nccl needs the coordinator on a GPU (--device cuda); use --transport tcp "
          "or auto");
    }
  }
  std::string path = absl::GetFlag(FLAGS_model);
  const std::string synthetic = absl::GetFlag(FLAGS_synthetic);
  if (!synthetic.empty() && !path.empty()) return Fail("give --model or --synthetic, not both");
  const bool demo = path.empty() && synthetic.empty();
  if (demo) {
    absl::StatusOr<std::string> found = dsv2::FindDemoModel();
    if (!found.ok()) return Fail(std::string(found.status().message()));
    path = *found;
  }
  // SIGINT and SIGTERM are taken by one thread with sigwait; every thread started from here on
  // inherits the blocked mask, so no handler runs inside gRPC or the engine.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  // The workers' TLS files, read once here (every Configure reuses the credentials). After the
  // signal mask: making credentials starts gRPC's threads, which must not take SIGTERM.
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> worker_credentials =
      dsv2::MakeChannelCredentials({.ca = absl::GetFlag(FLAGS_worker_tls_ca),
                                    .cert = absl::GetFlag(FLAGS_worker_tls_cert),
                                    .key = absl::GetFlag(FLAGS_worker_tls_key),
                                    .flag_prefix = "--worker-"});
  if (!worker_credentials.ok()) return Fail(std::string(worker_credentials.status().message()));
  absl::StatusOr<std::unique_ptr<dsv2::CoordinatorServer>> server = dsv2::CoordinatorServer::Start(
      {.model_dir = path,
       .synthetic = synthetic,
       .demo = demo,
       .host = absl::GetFlag(FLAGS_host),
       .port = absl::GetFlag(FLAGS_port),
       .placement = *placement,
       .http_port = absl::GetFlag(FLAGS_http_port),
       .model_name = absl::GetFlag(FLAGS_served_model_name),
       .engine = {.max_step_tokens = absl::GetFlag(FLAGS_max_batch_tokens),
                  .max_prefill_tokens_while_decoding =
                      absl::GetFlag(FLAGS_max_prefill_while_decoding),
                  .max_running = absl::GetFlag(FLAGS_max_running),
                  .queue_capacity = absl::GetFlag(FLAGS_queue_capacity),
                  .cache_pages = absl::GetFlag(FLAGS_cache_pages),
                  .gpu_memory_fraction = absl::GetFlag(FLAGS_gpu_memory_fraction),
                  .page_size = absl::GetFlag(FLAGS_page_size),
                  .max_context = absl::GetFlag(FLAGS_max_context),
                  .default_max_new_tokens = absl::GetFlag(FLAGS_default_max_new_tokens),
                  .max_new_tokens_limit = absl::GetFlag(FLAGS_max_new_tokens_limit),
                  .threads = absl::GetFlag(FLAGS_threads),
                  .enforce_eager = absl::GetFlag(FLAGS_enforce_eager),
                  .prefix_caching = absl::GetFlag(FLAGS_prefix_caching),
                  .stop_limits = {.max_strings = absl::GetFlag(FLAGS_max_stop_strings),
                                  .max_bytes = absl::GetFlag(FLAGS_max_stop_string_bytes)}},
       .max_request_bytes = absl::GetFlag(FLAGS_max_request_bytes),
       .max_concurrent_streams = absl::GetFlag(FLAGS_max_concurrent_streams),
       .max_rpc_threads = absl::GetFlag(FLAGS_max_rpc_threads),
       .rpc_memory_bytes = absl::GetFlag(FLAGS_rpc_memory_mb) << 20,
       .tls_cert_file = absl::GetFlag(FLAGS_tls_cert),
       .tls_key_file = absl::GetFlag(FLAGS_tls_key),
       .tls_client_ca_file = absl::GetFlag(FLAGS_tls_client_ca),
       .expert_parallel = {.workers = workers,
                           .coordinator_hosts_experts = absl::GetFlag(FLAGS_coordinator_experts),
                           .timeout = absl::Seconds(absl::GetFlag(FLAGS_worker_timeout)),
                           .secret = *secret,
                           .worker_credentials = *worker_credentials,
                           .transport = transport,
                           .micro_batches = absl::GetFlag(FLAGS_micro_batches)}});
  if (!server.ok()) return Fail(std::string(server.status().message()));
  std::fprintf(stderr, "dsv2-coordinator: serving %s%s on %s:%d (%s, %s)\n",
               synthetic.empty() ? path.c_str() : ("synthetic " + synthetic).c_str(),
               demo                 ? " (the built-in demo model)"
               : !synthetic.empty() ? " (random weights)"
                                    : "",
               absl::GetFlag(FLAGS_host).c_str(), (*server)->port(),
               dsv2::DescribePlacement((*server)->model()).c_str(),
               (*server)->has_tokenizer() ? "with tokenizer" : "token ids only");
  {
    const dsv2::InferenceEngineOptions& o = (*server)->engine().options();
    const dsv2::DeepseekV2Model& model = (*server)->model();
    std::fprintf(stderr,
                 "dsv2-coordinator: latent KV cache: %lld pages of %lld tokens (%.2f GB), %lld "
                 "tokens in all; max context %lld tokens (%s); prefix caching %s\n",
                 static_cast<long long>(o.cache_pages), static_cast<long long>(o.page_size),
                 o.cache_pages * model.CachePageBytes(o.page_size) / 1e9,
                 static_cast<long long>(o.cache_pages * o.page_size),
                 static_cast<long long>(o.max_context),
                 absl::GetFlag(FLAGS_max_context) > 0
                     ? "--max-context"
                     : absl::StrCat("the model's ", model.config().max_position_embeddings,
                                    ", bounded by the cache")
                           .c_str(),
                 o.prefix_caching ? "on" : "off (--prefix-caching=false)");
  }
  const std::string host = absl::GetFlag(FLAGS_host);
  if (open_cluster) {
    std::fprintf(stderr,
                 "dsv2-coordinator: WARNING: no cluster secret (--cluster-secret-file or "
                 "DSV2_CLUSTER_SECRET) and workers beyond loopback: anyone who reaches a "
                 "worker can configure it\n");
  }
  if (absl::GetFlag(FLAGS_tls_cert).empty()) {
    std::fprintf(stderr, "dsv2-coordinator: gRPC API in PLAINTEXT on %s:%d\n", host.c_str(),
                 (*server)->port());
    if (!dsv2::IsLoopbackHost(host)) {
      std::fprintf(stderr,
                   "dsv2-coordinator: WARNING: plaintext on a non-loopback address: anyone who can "
                   "reach the port can use and read the API; give --tls-cert/--tls-key (and "
                   "--tls-client-ca for mutual TLS), or listen on --host 127.0.0.1\n");
    }
  } else {
    std::fprintf(stderr, "dsv2-coordinator: gRPC API over TLS on %s:%d (%s)\n", host.c_str(),
                 (*server)->port(),
                 absl::GetFlag(FLAGS_tls_client_ca).empty()
                     ? "server certificate only"
                     : "mutual: clients must present a certificate --tls-client-ca signed");
  }
  if ((*server)->http_port() != 0) {
    const bool tls = !absl::GetFlag(FLAGS_tls_cert).empty();
    std::fprintf(stderr,
                 "dsv2-coordinator: OpenAI-compatible HTTP API %s on %s:%d "
                 "(/v1/completions, /v1/chat/completions, /v1/models, /health, /metrics)\n",
                 !tls                                         ? "in PLAINTEXT"
                 : absl::GetFlag(FLAGS_tls_client_ca).empty() ? "over TLS (HTTPS)"
                                                              : "over mutual TLS (HTTPS)",
                 host.c_str(), (*server)->http_port());
  }
  std::thread signal_thread([&] {
    int sig = 0;
    sigwait(&stop_signals, &sig);
    const double drain_s = std::max(0.0, absl::GetFlag(FLAGS_drain_timeout));
    std::fprintf(stderr, "dsv2-coordinator: %s received: NOT_SERVING, draining (up to %.0f s)\n",
                 sig == SIGINT ? "SIGINT" : "SIGTERM", drain_s);
    const int64_t cut =
        (*server)->Drain(std::chrono::milliseconds(static_cast<int64_t>(drain_s * 1000)));
    std::fprintf(stderr, "dsv2-coordinator: drained (%lld requests cut off by the timeout)\n",
                 static_cast<long long>(cut));
  });
  (*server)->Wait();
  signal_thread.join();
  std::fprintf(stderr, "dsv2-coordinator: stopped\n");
  return 0;
}
