// The request bodies of the OpenAI-compatible API (POST /v1/completions and
// /v1/chat/completions): JSON read with nlohmann::json's non-throwing parse, every parameter's
// type and range checked, the prompt tokenized, into the engine's GenerationRequest. Errors are
// OpenAI-shaped: 400 naming the parameter, 404 for another model. No engine is involved, so
// this is also what the HTTP fuzz target drives (tests/fuzz/parser_targets.h).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "coordinator/serving/generation.h"
#include "coordinator/tokenizer/tokenizer.h"
#include "nlohmann/json.hpp"

namespace dsv2 {

using json = nlohmann::json;

struct ApiError {
  int status = 400;
  std::string message;
  std::string param;  // empty: null
  std::string type = "invalid_request_error";
};

// {"error": {"message", "type", "param", "code"}}.
std::string ErrorBody(const ApiError& e);
// An engine status as the HTTP error a client sees (429 for a full queue, 503 unavailable, ...).
ApiError FromStatus(const absl::Status& s);

struct OpenAiRequestContext {
  const Tokenizer* tokenizer = nullptr;  // null: prompts must be token ids, no chat
  std::string model_id;                  // requests must name it
  int64_t vocab_size = 0;
};

struct ParsedOpenAiRequest {
  GenerationRequest request;
  bool stream = false;
  bool include_usage = false;
};

// Parses and checks one body; nullopt and *out filled when it is a valid request.
std::optional<ApiError> ParseOpenAiRequest(std::string_view body,
                                           const OpenAiRequestContext& context, bool chat,
                                           ParsedOpenAiRequest* out);

}  // namespace dsv2
