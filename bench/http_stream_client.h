// A minimal blocking HTTP/1.1 client for one streamed OpenAI completion (server-sent events),
// timing each event as it arrives: what load_generator --http measures beside gRPC.
#pragma once

#include <string>
#include <vector>

namespace dsv2 {

struct HttpStreamResult {
  bool ok = false;
  std::string error;
  int tokens = 0;  // events that carried a choice (one generated token each)
  double ttft_ms = 0;
  std::vector<double> itl_ms;
  double latency_ms = 0;
};

// POSTs `json_body` to http://host:port/v1/completions (it must ask for "stream": true) and
// reads the events until [DONE].
HttpStreamResult StreamCompletion(const std::string& host, int port, const std::string& json_body,
                                  double timeout_s);

}  // namespace dsv2
