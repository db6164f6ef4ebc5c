#include "coordinator/expert_parallel/lws_group.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace dsv2 {

absl::StatusOr<std::vector<std::string>> LwsWorkerAddresses(const char* leader_address,
                                                            const char* group_size, int port) {
  if (leader_address == nullptr || *leader_address == '\0') {
    return absl::InvalidArgumentError(
        "--workers lws: LWS_LEADER_ADDRESS is not set (is this pod part of a LeaderWorkerSet?)");
  }
  int size = 0;
  if (group_size == nullptr || !absl::SimpleAtoi(group_size, &size) || size < 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--workers lws: LWS_GROUP_SIZE must be an integer >= 2 (leader + workers), got '",
        group_size == nullptr ? "" : group_size, "'"));
  }
  const std::string leader(leader_address);
  const size_t dot = leader.find('.');
  const std::string pod = leader.substr(0, dot);
  const std::string domain = dot == std::string::npos ? "" : leader.substr(dot);
  if (pod.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--workers lws: LWS_LEADER_ADDRESS '", leader, "' has no pod name"));
  }
  std::vector<std::string> out;
  for (int i = 1; i < size; ++i) out.push_back(absl::StrCat(pod, "-", i, domain, ":", port));
  return out;
}

}  // namespace dsv2
