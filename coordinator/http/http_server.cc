#include "coordinator/http/http_server.h"

#include <sys/socket.h>
#include <sys/time.h>

// Boost 1.74 Asio under C++20 with g++ 12 needs <utility> first (DESIGN.md, build notes).
#include <utility>
// clang-format off
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
// clang-format on

#include <condition_variable>
#include <list>

#include "absl/strings/str_cat.h"

namespace dsv2 {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

void SetReadTimeout(tcp::socket& s, int seconds) {
  timeval tv{seconds, 0};
  setsockopt(s.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
}

std::string ErrorJson(const std::string& message, const char* type) {
  // Minimal escaping: the messages here are our own ASCII sentences.
  return absl::StrCat(R"({"error":{"message":")", message, R"(","type":")", type,
                      R"(","param":null,"code":null}})");
}

// One client connection's responses, over a plain socket or a TLS stream on it.
template <typename Stream>
class Connection final : public HttpResponder {
 public:
  Connection(Stream& stream, bool keep_alive) : socket_(stream), keep_alive_(keep_alive) {}

  void Send(int status, const std::string& body, const std::string& content_type) override {
    http::response<http::string_body> res{static_cast<http::status>(status), 11};
    res.set(http::field::server, "dsv2-serve");
    res.set(http::field::content_type, content_type);
    res.keep_alive(keep_alive_);
    res.body() = body;
    res.prepare_payload();
    beast::error_code ec;
    http::write(socket_, res, ec);
    if (ec) ok_ = false;
    sent_ = true;
  }
  bool StartEvents() override {
    http::response<http::empty_body> res{http::status::ok, 11};
    res.set(http::field::server, "dsv2-serve");
    res.set(http::field::content_type, "text/event-stream");
    res.set(http::field::cache_control, "no-cache");
    res.keep_alive(keep_alive_);
    res.chunked(true);
    http::response_serializer<http::empty_body> sr{res};
    beast::error_code ec;
    http::write_header(socket_, sr, ec);
    ok_ = !ec;
    sent_ = true;
    streaming_ = true;
    return ok_;
  }
  bool Event(const std::string& data) override {
    if (!ok_) return false;
    const std::string frame = absl::StrCat("data: ", data, "\n\n");
    beast::error_code ec;
    asio::write(socket_, http::make_chunk(asio::buffer(frame)), ec);
    if (ec) ok_ = false;
    return ok_;
  }
  void Finish() {
    if (streaming_ && ok_) {
      beast::error_code ec;
      asio::write(socket_, http::make_chunk_last(), ec);
      if (ec) ok_ = false;
    }
  }
  bool sent() const { return sent_; }
  bool ok() const { return ok_; }
  void Reset(bool keep_alive) {
    keep_alive_ = keep_alive;
    sent_ = streaming_ = false;
  }

 private:
  Stream& socket_;
  bool keep_alive_;
  bool ok_ = true;
  bool sent_ = false;
  bool streaming_ = false;
};

}  // namespace

struct HttpServer::Impl {
  HttpServerOptions options;
  HttpHandler handler;
  asio::io_context io;
  tcp::acceptor acceptor{io};
  std::thread accept_thread;
  std::mutex mu;
  std::condition_variable idle;  // connections reached 0
  std::list<int> open_sockets;   // guarded by mu: native handles, shut down on Stop
  int connections = 0;           // guarded by mu: detached connection threads
  std::atomic<bool> stopping{false};
  std::unique_ptr<asio::ssl::context> tls;  // set: every connection is TLS

  void Serve(tcp::socket socket);
  template <typename Stream>
  void ServeRequests(Stream& stream);
  void AcceptLoop();
};

void HttpServer::Impl::Serve(tcp::socket socket) {
  SetReadTimeout(socket, options.read_timeout_s);  // the TLS handshake included
  std::list<int>::iterator self;
  {
    std::lock_guard<std::mutex> lock(mu);
    self = open_sockets.insert(open_sockets.end(), socket.native_handle());
  }
  if (tls != nullptr) {
    asio::ssl::stream<tcp::socket&> stream(socket, *tls);
    beast::error_code ec;
    stream.handshake(asio::ssl::stream_base::server, ec);
    // A failed handshake (plaintext, an untrusted or missing client certificate) ends here.
    if (!ec) ServeRequests(stream);
  } else {
    ServeRequests(socket);
  }
  beast::error_code ignored;
  socket.shutdown(tcp::socket::shutdown_both, ignored);
  std::lock_guard<std::mutex> lock(mu);
  open_sockets.erase(self);
  if (--connections == 0) idle.notify_all();
}

template <typename Stream>
void HttpServer::Impl::ServeRequests(Stream& stream) {
  Connection<Stream> conn(stream, true);
  beast::flat_buffer buffer;
  while (!stopping) {
    http::request_parser<http::string_body> parser;
    parser.body_limit(options.max_body_bytes);
    parser.header_limit(64 * 1024);
    beast::error_code ec;
    http::read(stream, buffer, parser, ec);
    if (ec == http::error::body_limit) {
      conn.Reset(false);
      conn.Send(
          413,
          ErrorJson(absl::StrCat("the request body exceeds ", options.max_body_bytes, " bytes"),
                    "invalid_request_error"),
          "application/json");
      return;
    }
    if (ec == http::error::end_of_stream || ec == asio::error::eof) return;
    if (ec) {
      // Malformed HTTP or a read timeout: say so when there was a request at all, then close.
      if (parser.got_some() && ec != asio::error::would_block && ec != asio::error::timed_out) {
        conn.Reset(false);
        conn.Send(400,
                  ErrorJson(absl::StrCat("malformed HTTP request: ", ec.message()),
                            "invalid_request_error"),
                  "application/json");
      }
      return;
    }
    const auto& req = parser.get();
    conn.Reset(req.keep_alive());
    HttpRequest r{std::string(req.method_string()), std::string(req.target()), req.body()};
    handler(r, conn);
    conn.Finish();
    if (!conn.sent()) conn.Send(500, ErrorJson("no response", "server_error"), "application/json");
    if (!conn.ok() || !req.keep_alive()) return;
  }
}

void HttpServer::Impl::AcceptLoop() {
  while (!stopping) {
    beast::error_code ec;
    tcp::socket socket(io);
    acceptor.accept(socket, ec);
    if (ec || stopping) continue;
    {
      std::lock_guard<std::mutex> lock(mu);
      if (connections >= options.max_connections) {
        if (tls == nullptr) {  // over TLS there is no cheap way to say it: the socket closes
          Connection<tcp::socket> busy(socket, false);
          busy.Send(503, ErrorJson("too many connections", "server_error"), "application/json");
        }
        continue;
      }
      ++connections;
    }
    // Detached: Stop() waits for `connections` to reach 0 before Impl goes away.
    std::thread([this, s = std::move(socket)]() mutable { Serve(std::move(s)); }).detach();
  }
}

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(const HttpServerOptions& options,
                                                              HttpHandler handler) {
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  impl->handler = std::move(handler);
  beast::error_code ec;
  if (!options.tls_cert_file.empty()) {
    // TLS 1.2 and newer, with the same files as the gRPC API.
    impl->tls = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_server);
    asio::ssl::context& c = *impl->tls;
    c.set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                      asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                      asio::ssl::context::no_tlsv1_1,
                  ec);
    auto refuse = [&](const char* flag, const std::string& file) {
      return absl::InvalidArgumentError(
          absl::StrCat("HTTP TLS: ", flag, " ", file, ": ", ec.message()));
    };
    c.use_certificate_chain_file(options.tls_cert_file, ec);
    if (ec) return refuse("--tls-cert", options.tls_cert_file);
    c.use_private_key_file(options.tls_key_file, asio::ssl::context::pem, ec);
    if (ec) return refuse("--tls-key", options.tls_key_file);
    if (!options.tls_client_ca_file.empty()) {
      c.load_verify_file(options.tls_client_ca_file, ec);
      if (ec) return refuse("--tls-client-ca", options.tls_client_ca_file);
      c.set_verify_mode(asio::ssl::verify_peer | asio::ssl::verify_fail_if_no_peer_cert, ec);
    }
  }
  const auto address = asio::ip::make_address(options.host, ec);
  if (ec)
    return absl::InvalidArgumentError(absl::StrCat("--host '", options.host, "': ", ec.message()));
  const tcp::endpoint endpoint(address, static_cast<uint16_t>(options.port));
  impl->acceptor.open(endpoint.protocol(), ec);
  if (!ec) impl->acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) impl->acceptor.bind(endpoint, ec);
  if (!ec) impl->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return absl::UnavailableError(absl::StrCat("HTTP: cannot listen on ", options.host, ":",
                                               options.port, ": ", ec.message(),
                                               " (--http-port 0 turns the HTTP API off)"));
  }
  std::unique_ptr<HttpServer> s(new HttpServer(std::move(impl)));
  s->port_ = s->impl_->acceptor.local_endpoint().port();
  Impl* raw = s->impl_.get();
  raw->accept_thread = std::thread([raw] { raw->AcceptLoop(); });
  return s;
}

HttpServer::HttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

HttpServer::~HttpServer() { Stop(); }

void HttpServer::Stop() {
  if (impl_ == nullptr || impl_->stopping.exchange(true)) return;
  beast::error_code ec;
  impl_->acceptor.cancel(ec);
  // Unblock accept(): a connection to ourselves, then close the acceptor.
  {
    tcp::socket poke(impl_->io);
    const auto ep = impl_->acceptor.local_endpoint(ec);
    if (!ec) {
      poke.connect(tcp::endpoint(ep.address().is_unspecified() ? asio::ip::make_address("127.0.0.1")
                                                               : ep.address(),
                                 ep.port()),
                   ec);
    }
  }
  if (impl_->accept_thread.joinable()) impl_->accept_thread.join();
  impl_->acceptor.close(ec);
  // Idle keep-alive connections block in read: shut their sockets down for reading (a
  // response being streamed still finishes), then wait for every connection thread.
  std::unique_lock<std::mutex> lock(impl_->mu);
  for (int fd : impl_->open_sockets) ::shutdown(fd, SHUT_RD);
  impl_->idle.wait(lock, [this] { return impl_->connections == 0; });
}

}  // namespace dsv2
