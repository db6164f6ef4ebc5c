// The request targets of tests/fuzz/parser_targets.h: what a client sends to the public APIs.
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

// clang-format off
#include <utility>  // Boost.Asio (under Beast) needs it first
#include "boost/beast/http.hpp"
// clang-format on

#include "coordinator/http/openai_request.h"
#include "coordinator/server/request_conversion.h"
#include "coordinator/tokenizer/tokenizer.h"
#include "tests/fuzz/parser_targets.h"

namespace dsv2::fuzz {
namespace {

void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz: invariant violated: %s\n", what);
    std::abort();
  }
}

// The built-in demo model's tokenizer ($DSV2_FUZZ_TOKENIZER_DIR, else the source tree's).
const Tokenizer* DemoTokenizer() {
  static const std::unique_ptr<Tokenizer> tokenizer = [] {
    const char* env = std::getenv("DSV2_FUZZ_TOKENIZER_DIR");
    const std::string dir = env != nullptr ? env : DSV2_FUZZ_TOKENIZER_DIR;
    absl::StatusOr<std::unique_ptr<Tokenizer>> t = Tokenizer::Load(dir);
    if (!t.ok()) {
      std::fprintf(stderr, "fuzz: cannot load the tokenizer of %s: %s\n", dir.c_str(),
                   std::string(t.status().message()).c_str());
      std::abort();
    }
    return *std::move(t);
  }();
  return tokenizer.get();
}

void CheckOpenAi(std::string_view body, bool chat) {
  const Tokenizer* tok = DemoTokenizer();
  const OpenAiRequestContext context{
      .tokenizer = tok, .model_id = "demo", .vocab_size = tok->vocab_size()};
  ParsedOpenAiRequest parsed;
  const std::optional<ApiError> error = ParseOpenAiRequest(body, context, chat, &parsed);
  if (error.has_value()) {
    Check(error->status == 400 || error->status == 404, "request errors are 400 or 404");
    Check(!error->message.empty(), "errors say why");
    Check(!ErrorBody(*error).empty(), "an error body");
    return;
  }
  const GenerationRequest& r = parsed.request;
  Check(!r.prompt.empty(), "a prompt");
  for (int32_t id : r.prompt) Check(id >= 0 && id < tok->vocab_size(), "ids in the vocabulary");
  Check(r.sampling.temperature >= 0 && r.sampling.temperature <= 2, "temperature in range");
  Check(r.sampling.top_p > 0 && r.sampling.top_p <= 1, "top_p in (0, 1]");
  Check(r.stop_strings.size() <= 4, "at most 4 stop strings");
  Check(r.top_logprobs >= 0 && r.top_logprobs <= 20, "top_logprobs in range");
  Check(r.max_new_tokens >= 0, "max_new_tokens not negative");
}

}  // namespace

void GenerateRequest(const uint8_t* data, size_t size) {
  v1::GenerateRequest request;
  if (!request.ParseFromArray(data, static_cast<int>(size))) return;  // gRPC refuses it first
  const Tokenizer* tok = DemoTokenizer();
  absl::StatusOr<GenerationRequest> g = ToGenerationRequest(request, tok);
  if (!g.ok()) {
    Check(g.status().code() == absl::StatusCode::kInvalidArgument, "errors are INVALID_ARGUMENT");
    Check(!g.status().message().empty(), "errors name the field");
    Check(ToGrpcStatus(g.status()).error_code() == grpc::StatusCode::INVALID_ARGUMENT,
          "INVALID_ARGUMENT on the wire");
    return;
  }
  // What the conversion guarantees; ranges (top_logprobs, max_new_tokens, sampling) are the
  // engine's to check at Submit (ServerTest.InvalidArgumentsNameTheField).
  Check(!g->prompt.empty(), "a prompt");
  if (request.prompt_case() != v1::GenerateRequest::kTokenIds) {
    for (int32_t id : g->prompt) Check(id >= 0 && id < tok->vocab_size(), "ids of the tokenizer");
  }
  Check(g->stop_strings.size() == static_cast<size_t>(request.stopping().stop_size()),
        "every stop string carried over");
}

void HttpRequest(const uint8_t* data, size_t size) {
  namespace http = boost::beast::http;
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  // As dsv2's HTTP server reads a request: bounded header and body.
  http::request_parser<http::string_body> parser;
  parser.header_limit(64 * 1024);
  parser.body_limit(1 << 20);
  parser.eager(true);
  boost::system::error_code ec;
  size_t used = 0;
  while (used < bytes.size() && !parser.is_done()) {
    const size_t n = parser.put(boost::asio::buffer(bytes.data() + used, bytes.size() - used), ec);
    if (ec == http::error::need_more) break;
    if (ec) break;
    if (n == 0) break;
    used += n;
  }
  if (!ec && parser.is_done()) {
    const auto& req = parser.get();
    const std::string target(req.target());
    if (req.method() == http::verb::post &&
        (target == "/v1/completions" || target == "/v1/chat/completions")) {
      CheckOpenAi(req.body(), target == "/v1/chat/completions");
    }
    return;
  }
  // Not an HTTP request: the bytes as a request body, chat or not by the first byte.
  if (!bytes.empty()) CheckOpenAi(bytes.substr(1), (bytes[0] & 1) != 0);
}

}  // namespace dsv2::fuzz
