// Small helpers that run Boost.Asio operations on the calling thread with a timeout. The TCP
// communicator owns one io_context per side and runs it only inside its own calls, so no thread
// of its own exists and no exception or handler outlives a call.
#pragma once

// Boost 1.74 Asio under C++20 with g++ 12 needs <utility> first.
#include <utility>
// clang-format off
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
// clang-format on

#include <functional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace dsv2::comm_tcp {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using ErrorCode = boost::system::error_code;

// Runs `io` on this thread until `pending` (decremented by the handlers) reaches 0. If `timeout`
// passes first, calls on_timeout() once; it must cancel or close what is pending, and the run
// continues until those handlers have completed. Returns true when the timeout fired.
bool RunUntilDone(asio::io_context& io, const int& pending, absl::Duration timeout,
                  const std::function<void()>& on_timeout);

// One operation to completion: start(done) initiates it and arranges for done(ec) to be called.
// On timeout, calls on_timeout() and returns asio::error::timed_out.
template <typename Start>
ErrorCode RunOne(asio::io_context& io, absl::Duration timeout, Start&& start,
                 const std::function<void()>& on_timeout) {
  int pending = 1;
  ErrorCode result;
  start([&result, &pending](const ErrorCode& ec) {
    result = ec;
    --pending;
  });
  if (RunUntilDone(io, pending, timeout, on_timeout)) return asio::error::timed_out;
  return result;
}

// Reads or writes `buffers` completely before `deadline`; closes the socket on timeout.
template <typename Buffers>
ErrorCode ReadBefore(asio::io_context& io, tcp::socket& socket, const Buffers& buffers,
                     absl::Time deadline) {
  return RunOne(
      io, deadline - absl::Now(),
      [&](auto done) {
        asio::async_read(socket, buffers, [done](const ErrorCode& ec, size_t) { done(ec); });
      },
      [&socket] { socket.close(); });
}
template <typename Buffers>
ErrorCode WriteBefore(asio::io_context& io, tcp::socket& socket, const Buffers& buffers,
                      absl::Time deadline) {
  return RunOne(
      io, deadline - absl::Now(),
      [&](auto done) {
        asio::async_write(socket, buffers, [done](const ErrorCode& ec, size_t) { done(ec); });
      },
      [&socket] { socket.close(); });
}

// "host:port" or "[v6 address]:port" → {host, port}.
absl::StatusOr<std::pair<std::string, std::string>> SplitHostPort(std::string_view endpoint);

// TCP_NODELAY (small headers go out at once) and SO_KEEPALIVE. Errors are ignored: both are
// optimisations, not correctness.
void SetSocketOptions(tcp::socket& socket);

// A short human text for an Asio error: "connection closed by peer", "timed out", ...
std::string Describe(const ErrorCode& ec);
// "250 ms", "10 s".
std::string DurationText(absl::Duration d);

}  // namespace dsv2::comm_tcp
