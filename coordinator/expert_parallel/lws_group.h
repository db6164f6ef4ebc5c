// The expert-parallel group inside a Kubernetes LeaderWorkerSet (leaderworkerset.x-k8s.io):
// the leader pod runs dsv2-coordinator, workers 1..size-1 run dsv2-worker. LWS gives every pod
// LWS_LEADER_ADDRESS (the leader's DNS name, "<lws>-<group>.<service>.<namespace>") and
// LWS_GROUP_SIZE, and each worker LWS_WORKER_INDEX (1..size-1, the leader is 0). Worker i's DNS
// name is the leader's pod name with "-i" appended, in the same subdomain; its rank in dsv2 is
// its worker index (the coordinator is rank 0), so no registration step is needed.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace dsv2 {

// "host:port" of workers 1..group_size-1 from the LWS variables (as given, e.g. read from the
// environment); INVALID_ARGUMENT naming the variable when one is missing or malformed.
absl::StatusOr<std::vector<std::string>> LwsWorkerAddresses(const char* leader_address,
                                                            const char* group_size, int port);

}  // namespace dsv2
