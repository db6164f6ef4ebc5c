// dsv2-worker: hosts a shard of the routed experts for a coordinator in expert-parallel mode.
//   dsv2-worker --model DIR --rank 1 --port 50061 --data-port 29500
// The rank defaults to $DSV2_RANK, else $LWS_WORKER_INDEX (a LeaderWorkerSet worker), else to
// the StatefulSet ordinal at the end of the hostname
// plus one (dsv2-worker-0 → rank 1), so one pod spec serves every replica.
#include <pthread.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/cli_flags.h"
#include "common/cluster_auth.h"
#include "common/grpc_tls.h"
#include "common/startup_checks.h"
#include "coordinator/model/device_flags.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/health_check_service_interface.h"
#include "worker/expert_host.h"

ABSL_FLAG(std::string, model, "",
          "Checkpoint directory or GGUF file, the same as the coordinator's (checked by "
          "fingerprint); only this worker's experts are ever read.");
ABSL_FLAG(int, rank, 0,
          "This worker's rank, 1..W (the coordinator is rank 0). 0: $DSV2_RANK, else "
          "$LWS_WORKER_INDEX, else the hostname's trailing ordinal + 1.");
ABSL_FLAG(std::string, host, "0.0.0.0", "Address for the control and data ports.");
ABSL_FLAG(int, port, 50061, "Control-plane gRPC port (dsv2.v1.ExpertWorker, health).");
ABSL_FLAG(int, data_port, 29500, "Data-plane TCP port the coordinator connects to (0: any).");
ABSL_FLAG(int, threads, 0,
          "CPU threads for the experts on the CPU, and for staging activations (0: one per "
          "core).");
ABSL_FLAG(std::string, cluster_secret_file, "",
          "A file holding the cluster's shared secret (>= 16 bytes; else $DSV2_CLUSTER_SECRET, "
          "which a Kubernetes Secret can fill): every control-plane call must then prove it holds "
          "it (HMAC-SHA-256 over a nonce this worker issued once); refusals are logged with the "
          "peer's address and counted. Without one, anyone who reaches the port can configure "
          "this worker.");
ABSL_FLAG(std::string, tls_cert, "",
          "PEM certificate (chain): serve the control port (Configure, status) over TLS instead "
          "of plaintext; the coordinator then needs --worker-tls-ca. Needs --tls-key.");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls-cert.");
ABSL_FLAG(std::string, tls_client_ca, "",
          "PEM CA certificate(s): with --tls-cert, the coordinator must present a certificate "
          "signed by one of them (--worker-tls-cert/--worker-tls-key: mutual TLS).");
ABSL_FLAG(double, timeout, 10.0,
          "Seconds a started message from the coordinator may stall before the session is "
          "dropped.");

namespace {

int Fail(const std::string& msg) {
  std::fprintf(stderr, "dsv2-worker: %s\n", msg.c_str());
  return 2;
}

// The StatefulSet ordinal: "dsv2-worker-3" → 3; -1 when the hostname has none.
int HostnameOrdinal() {
  char name[256] = {};
  if (gethostname(name, sizeof(name) - 1) != 0) return -1;
  const std::string host(name);
  const size_t dash = host.rfind('-');
  int ordinal = -1;
  if (dash == std::string::npos || !absl::SimpleAtoi(host.substr(dash + 1), &ordinal)) return -1;
  return ordinal;
}

}  // namespace

int main(int argc, char** argv) {
  dsv2::ParseFlags(argc, argv,
                   "Hosts a shard of the routed experts for dsv2-coordinator --workers.\n"
                   "  dsv2-worker --model DIR --rank 1 --port 50061 --data-port 29500");
  static constexpr dsv2::FlagRange kRanges[] = {
      {"rank", 0, 1 << 20, "0: from the environment"},
      {"port", 0, 65535, "0: any free port"},
      {"data_port", 0, 65535, "0: any"},
      {"threads", 0, 4096, "0: one per core"},
      {"timeout", 0.01, 3600, "seconds"},
  };
  if (absl::Status s = dsv2::CheckFlagRanges(kRanges); !s.ok()) {
    return Fail(std::string(s.message()));
  }
  const std::string model = absl::GetFlag(FLAGS_model);
  if (model.empty()) return Fail("--model DIR is required (see --help)");
  if (absl::Status s =
          dsv2::CheckPortFree("port", absl::GetFlag(FLAGS_host), absl::GetFlag(FLAGS_port));
      !s.ok()) {
    return Fail(std::string(s.message()));
  }
  int rank = absl::GetFlag(FLAGS_rank);
  if (rank == 0) {
    if (const char* env = std::getenv("DSV2_RANK"); env != nullptr) {
      if (!absl::SimpleAtoi(env, &rank)) return Fail(absl::StrCat("DSV2_RANK='", env, "'"));
    } else if (const char* lws = std::getenv("LWS_WORKER_INDEX"); lws != nullptr) {
      // A LeaderWorkerSet worker: index 1..size-1 is the rank (the leader, 0, is the
      // coordinator).
      if (!absl::SimpleAtoi(lws, &rank)) return Fail(absl::StrCat("LWS_WORKER_INDEX='", lws, "'"));
    } else if (const int ordinal = HostnameOrdinal(); ordinal >= 0) {
      rank = ordinal + 1;
    }
  }
  // --device auto: the GPU when one is usable (the shard is uploaded to it at Configure), else
  // the CPU; --dtype must match the coordinator's (Configure refuses a mismatch).
  absl::StatusOr<dsv2::ModelPlacement> placement = dsv2::PlacementFromFlags();
  if (!placement.ok()) return Fail(std::string(placement.status().message()));
  absl::StatusOr<dsv2::ClusterSecret> secret =
      dsv2::ClusterSecret::FromFileOrEnv(absl::GetFlag(FLAGS_cluster_secret_file));
  if (!secret.ok()) return Fail(std::string(secret.status().message()));
  if (rank < 1)
    return Fail(
        "no rank: pass --rank N (N >= 1), set DSV2_RANK, run as a LeaderWorkerSet worker "
        "(LWS_WORKER_INDEX), or run in a StatefulSet whose hostnames end in -<ordinal>");
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  absl::StatusOr<std::unique_ptr<dsv2::ExpertHost>> host =
      dsv2::ExpertHost::Create({.model_dir = model,
                                .rank = rank,
                                .data_port = absl::GetFlag(FLAGS_data_port),
                                .threads = absl::GetFlag(FLAGS_threads),
                                .idle_timeout = absl::Seconds(2),
                                .timeout = absl::Seconds(absl::GetFlag(FLAGS_timeout)),
                                .device = placement->device,
                                .gpu = placement->cuda_device,
                                .dtype = placement->dtype,
                                .secret = *secret});
  if (!host.ok()) return Fail(std::string(host.status().message()));
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  const std::string address =
      absl::StrCat(absl::GetFlag(FLAGS_host), ":", absl::GetFlag(FLAGS_port));
  int bound = 0;
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> credentials =
      dsv2::MakeServerCredentials({.cert = absl::GetFlag(FLAGS_tls_cert),
                                   .key = absl::GetFlag(FLAGS_tls_key),
                                   .client_ca = absl::GetFlag(FLAGS_tls_client_ca)});
  if (!credentials.ok()) return Fail(std::string(credentials.status().message()));
  builder.AddListeningPort(address, *credentials, &bound);
  builder.RegisterService(host->get());
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || bound == 0) {
    return Fail(absl::StrCat("cannot listen on ", address,
                             absl::GetFlag(FLAGS_tls_cert).empty()
                                 ? ""
                                 : " (with TLS: check that --tls-key is the key of --tls-cert)"));
  }
  std::fprintf(stderr,
               "dsv2-worker rank %d: control on %s:%d, data on port %d, checkpoint %s "
               "(fingerprint %s), experts on %s in %s, control port %s; waiting for the "
               "coordinator\n",
               rank, absl::GetFlag(FLAGS_host).c_str(), bound, (*host)->data_port(), model.c_str(),
               (*host)->fingerprint().c_str(), (*host)->device_name().c_str(),
               dsv2::PrecisionName(placement->dtype),
               absl::GetFlag(FLAGS_tls_cert).empty()        ? "in plaintext"
               : absl::GetFlag(FLAGS_tls_client_ca).empty() ? "over TLS"
                                                            : "over mutual TLS");
  // Warnings once the worker serves: a start that fails says only why.
  if (!secret->enabled() && !dsv2::IsLoopbackHost(absl::GetFlag(FLAGS_host))) {
    std::fprintf(stderr,
                 "dsv2-worker: WARNING: no cluster secret (--cluster-secret-file or "
                 "DSV2_CLUSTER_SECRET) on %s: anyone who reaches the control port can configure "
                 "this worker\n",
                 absl::GetFlag(FLAGS_host).c_str());
  }
  std::thread signal_thread([&] {
    int sig = 0;
    sigwait(&stop_signals, &sig);
    // The layer in flight is finished and sent back (the layer loop checks for the stop
    // between layers, when ExpertHost goes away below); the control server closes now.
    std::fprintf(stderr, "dsv2-worker rank %d: %s received: finishing the layer in flight\n", rank,
                 sig == SIGINT ? "SIGINT" : "SIGTERM");
    server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  });
  server->Wait();
  signal_thread.join();
  std::fprintf(stderr, "dsv2-worker rank %d: stopped\n", rank);
  return 0;
}
