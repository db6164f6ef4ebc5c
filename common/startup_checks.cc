#include "common/startup_checks.h"

#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "absl/flags/reflection.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace dsv2 {
namespace {

std::string Dashed(absl::string_view flag) {
  std::string s(flag);
  for (char& c : s) {
    if (c == '_') c = '-';
  }
  return s;
}

std::string Number(double v) {
  if (std::abs(v) < 1e15 && v == std::floor(v)) return absl::StrCat(static_cast<int64_t>(v));
  return absl::StrCat(v);
}

}  // namespace

absl::Status CheckFlagRanges(absl::Span<const FlagRange> ranges) {
  for (const FlagRange& r : ranges) {
    const absl::CommandLineFlag* flag = absl::FindCommandLineFlag(r.flag);
    if (flag == nullptr) {
      return absl::InternalError(absl::StrCat("no flag --", Dashed(r.flag), " to check"));
    }
    const std::string value = flag->CurrentValue();
    double v = 0;
    if (!absl::SimpleAtod(value, &v) || !(v >= r.min && v <= r.max)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--", Dashed(r.flag), " ", value, ": must be in [", Number(r.min), ", ", Number(r.max),
          "]", r.why.empty() ? "" : " (", r.why, r.why.empty() ? "" : ")"));
    }
  }
  return absl::OkStatus();
}

void ExitOnBadFlags(const char* program, absl::Span<const FlagRange> ranges) {
  if (absl::Status s = CheckFlagRanges(ranges); !s.ok()) {
    std::fprintf(stderr, "%s: %s\n", program, std::string(s.message()).c_str());
    std::exit(2);
  }
}

absl::Status CheckPortFree(absl::string_view flag, const std::string& host, int port) {
  const std::string where = absl::StrCat(host, ":", port);
  if (port < 0 || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", Dashed(flag), " ", port, ": must be in [0, 65535]"));
  }
  if (port == 0) return absl::OkStatus();
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* found = nullptr;
  const std::string service = absl::StrCat(port);
  const std::string name = host.size() > 2 && host.front() == '[' && host.back() == ']'
                               ? host.substr(1, host.size() - 2)
                               : host;
  if (const int rc = getaddrinfo(name.c_str(), service.c_str(), &hints, &found); rc != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--host ", host, ": cannot resolve (", gai_strerror(rc), ")"));
  }
  absl::Status status = absl::OkStatus();
  for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
    const int fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
    if (fd < 0) continue;
    const int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    const bool bound = bind(fd, a->ai_addr, a->ai_addrlen) == 0;
    const int err = errno;
    close(fd);
    if (!bound) {
      status = absl::FailedPreconditionError(absl::StrCat("--", Dashed(flag), " ", port,
                                                          ": cannot listen on ", where, " (",
                                                          std::strerror(err), ")"));
      break;
    }
  }
  freeaddrinfo(found);
  return status;
}

}  // namespace dsv2
