// dsv2-cli's subcommands. Each returns the process exit code and prints its own errors.
#pragma once

#include <memory>

#include "coordinator/client/cli_util.h"
#include "dsv2/v1/inference.grpc.pb.h"
#include "grpcpp/grpcpp.h"

namespace dsv2::cli {

// Streams a Generate (text, token ids or chat): text deltas to stdout as they arrive, then a
// summary line (finish reason, tokens, TTFT, ms/token) and any logprobs to stderr.
// 0 on success, 1 on an RPC error, 130 when interrupted with Ctrl-C.
int RunGenerate(const std::shared_ptr<grpc::Channel>& channel, const v1::GenerateRequest& request,
                double timeout_s, InterruptWatcher* interrupts);

// Prints the ids, then one line per token. 0 on success, 1 on an RPC error.
int RunTokenize(const std::shared_ptr<grpc::Channel>& channel, const v1::TokenizeRequest& request,
                double timeout_s, InterruptWatcher* interrupts);

// GetModelInfo as readable lines. 0 on success, 1 on an RPC error.
int RunInfo(const std::shared_ptr<grpc::Channel>& channel, double timeout_s,
            InterruptWatcher* interrupts);

// grpc.health.v1.Health/Check for service "". 0 when SERVING, 1 for any other status (or a
// server without the health service), 2 when the server cannot be reached in time.
int RunHealth(const std::shared_ptr<grpc::Channel>& channel, double timeout_s,
              InterruptWatcher* interrupts);

}  // namespace dsv2::cli
