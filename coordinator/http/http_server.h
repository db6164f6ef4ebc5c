// HttpServer: a small HTTP/1.1 server (Boost.Beast over Asio) for the OpenAI-compatible API and
// the operator endpoints, in the coordinator process, onto the same engine as gRPC. One thread
// per connection (blocking reads and writes; streaming responses are written as the engine
// produces them), keep-alive, bodies capped (413), header and body reads bounded in time
// (slowloris), at most `max_connections` at once (503 beyond), optionally TLS (and mutual TLS)
// with the gRPC API's certificate. Handlers never throw.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace dsv2 {

struct HttpRequest {
  std::string method;  // "GET", "POST", ...
  std::string target;  // path (and query)
  std::string body;
};

// What a handler writes back: either one whole response, or a stream of server-sent events.
class HttpResponder {
 public:
  virtual ~HttpResponder() = default;
  // A complete response (JSON unless content_type says otherwise).
  virtual void Send(int status, const std::string& body,
                    const std::string& content_type = "application/json") = 0;
  // Starts a text/event-stream response; then Event() per event. False once the client is gone
  // (the handler should cancel its work).
  virtual bool StartEvents() = 0;
  virtual bool Event(const std::string& data) = 0;  // writes "data: <data>\n\n"
};

using HttpHandler = std::function<void(const HttpRequest&, HttpResponder&)>;

struct HttpServerOptions {
  std::string host = "0.0.0.0";
  int port = 8000;  // 0: any free port
  int64_t max_body_bytes = 4 << 20;
  int read_timeout_s = 30;  // a request's headers and body must arrive within this
  int max_connections = 512;
  // TLS (PEM files; empty cert: plaintext). With client_ca_file, clients must present a
  // certificate it signed (mutual TLS).
  std::string tls_cert_file = "";
  std::string tls_key_file = "";
  std::string tls_client_ca_file = "";
};

class HttpServer {
 public:
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(const HttpServerOptions& options,
                                                           HttpHandler handler);
  ~HttpServer();  // Stop()
  // Stops accepting, closes idle connections, waits for the connection threads (a streaming
  // response ends when its handler returns).
  void Stop();
  int port() const { return port_; }

 private:
  struct Impl;
  explicit HttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  int port_ = 0;
};

}  // namespace dsv2
