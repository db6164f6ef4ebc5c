#include "common/comm/tcp/asio_util.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>
#include <chrono>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace dsv2::comm_tcp {

bool RunUntilDone(asio::io_context& io, const int& pending, absl::Duration timeout,
                  const std::function<void()>& on_timeout) {
  io.restart();
  bool timed_out = false;
  asio::steady_timer timer(io);
  if (timeout != absl::InfiniteDuration()) {
    const auto ms = std::max<int64_t>(0, absl::ToInt64Milliseconds(timeout));
    timer.expires_after(std::chrono::milliseconds(ms));
    timer.async_wait([&](const ErrorCode& ec) {
      if (ec || pending == 0) return;
      timed_out = true;
      on_timeout();
    });
  }
  while (pending > 0 && io.run_one() > 0) {
  }
  timer.cancel();
  io.poll();  // the cancelled timer's handler: nothing may outlive this frame
  return timed_out;
}

absl::StatusOr<std::pair<std::string, std::string>> SplitHostPort(std::string_view endpoint) {
  std::string_view host, port;
  if (!endpoint.empty() && endpoint.front() == '[') {
    const size_t close = endpoint.find(']');
    if (close == std::string_view::npos || close + 1 >= endpoint.size() ||
        endpoint[close + 1] != ':') {
      return absl::InvalidArgumentError(
          absl::StrCat("endpoint \"", std::string(endpoint), "\" is not [address]:port"));
    }
    host = endpoint.substr(1, close - 1);
    port = endpoint.substr(close + 2);
  } else {
    const size_t colon = endpoint.rfind(':');
    if (colon == std::string_view::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("endpoint \"", std::string(endpoint), "\" is not host:port"));
    }
    host = endpoint.substr(0, colon);
    port = endpoint.substr(colon + 1);
  }
  int value = 0;
  if (host.empty() || !absl::SimpleAtoi(absl::string_view(port.data(), port.size()), &value) ||
      value < 1 || value > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("endpoint \"", std::string(endpoint),
                                                   "\" needs a host and a port in 1..65535"));
  }
  return std::make_pair(std::string(host), std::string(port));
}

void SetSocketOptions(tcp::socket& socket) {
  ErrorCode ignored;
  socket.set_option(tcp::no_delay(true), ignored);
  socket.set_option(asio::socket_base::keep_alive(true), ignored);
  // A peer whose host vanished sends no FIN: probe after 5 s of silence, every 2 s, give up
  // after 3 misses (~11 s) instead of Linux's default two hours.
  const int fd = socket.native_handle();
  const int idle = 5, interval = 2, count = 3;
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof(interval));
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof(count));
}

std::string Describe(const ErrorCode& ec) {
  if (ec == asio::error::eof) return "connection closed by peer";
  if (ec == asio::error::connection_reset) return "connection reset by peer";
  if (ec == asio::error::broken_pipe) return "connection broken (peer gone)";
  if (ec == asio::error::timed_out) return "timed out";
  if (ec == asio::error::operation_aborted) return "operation aborted";
  return ec.message();
}

std::string DurationText(absl::Duration d) {
  if (d == absl::InfiniteDuration()) return "forever";
  if (d < absl::Seconds(10)) return absl::StrCat(absl::ToInt64Milliseconds(d), " ms");
  return absl::StrCat(absl::ToDoubleSeconds(d), " s");
}

}  // namespace dsv2::comm_tcp
