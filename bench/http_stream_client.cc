#include "bench/http_stream_client.h"

#include <sys/socket.h>
#include <sys/time.h>

// Boost 1.74 Asio under C++20 with g++ 12 needs <utility> first (DESIGN.md, build notes).
#include <utility>
// clang-format off
#include <boost/asio.hpp>
// clang-format on

#include <chrono>

#include "absl/strings/str_cat.h"

namespace dsv2 {

HttpStreamResult StreamCompletion(const std::string& host, int port, const std::string& body,
                                  double timeout_s) {
  namespace asio = boost::asio;
  using Clock = std::chrono::steady_clock;
  auto ms = [](Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); };
  HttpStreamResult out;
  asio::io_context io;
  asio::ip::tcp::socket socket(io);
  boost::system::error_code ec;
  const Clock::time_point start = Clock::now();
  socket.connect({asio::ip::make_address(host, ec), static_cast<uint16_t>(port)}, ec);
  if (ec) {
    out.error = "connect: " + ec.message();
    return out;
  }
  timeval tv{static_cast<time_t>(timeout_s), 0};
  setsockopt(socket.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  const std::string request =
      absl::StrCat("POST /v1/completions HTTP/1.1\r\nHost: ", host,
                   "\r\nContent-Type: "
                   "application/json\r\nConnection: close\r\nContent-Length: ",
                   body.size(), "\r\n\r\n", body);
  asio::write(socket, asio::buffer(request), ec);
  if (ec) {
    out.error = "write: " + ec.message();
    return out;
  }
  // Each event is one chunk on the wire ("data: {...}\n\n"): scan the raw bytes for them; the
  // chunk-size lines between them are skipped.
  std::string buf;
  char chunk[16384];
  Clock::time_point previous = start;
  bool done = false, status_checked = false;
  while (!done) {
    const size_t n = socket.read_some(asio::buffer(chunk), ec);
    if (ec) break;
    buf.append(chunk, n);
    if (!status_checked && buf.size() >= 12) {
      if (buf.compare(0, 12, "HTTP/1.1 200") != 0) {
        out.error = buf.substr(0, buf.find("\r\n"));
        return out;
      }
      status_checked = true;
    }
    size_t pos;
    while ((pos = buf.find("data: ")) != std::string::npos) {
      const size_t end = buf.find("\n\n", pos);
      if (end == std::string::npos) break;
      const std::string event = buf.substr(pos + 6, end - pos - 6);
      buf.erase(0, end + 2);
      if (event == "[DONE]") {
        done = true;
        break;
      }
      if (event.find("\"error\"") != std::string::npos) {
        out.error = event;
        return out;
      }
      if (event.find("\"text\"") == std::string::npos) continue;  // the usage chunk
      const Clock::time_point now = Clock::now();
      if (out.tokens == 0) {
        out.ttft_ms = ms(now - start);
      } else {
        out.itl_ms.push_back(ms(now - previous));
      }
      previous = now;
      ++out.tokens;
    }
  }
  out.latency_ms = ms(Clock::now() - start);
  out.ok = done;
  if (!done) out.error = "the stream ended before [DONE]" + (ec ? ": " + ec.message() : "");
  return out;
}

}  // namespace dsv2
