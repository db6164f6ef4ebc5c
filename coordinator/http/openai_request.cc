#include "coordinator/http/openai_request.h"

#include <algorithm>
#include <cstdint>
#include <random>

#include "absl/strings/str_cat.h"

namespace dsv2 {

std::string ErrorBody(const ApiError& e) {
  json j = {{"error",
             {{"message", e.message},
              {"type", e.type},
              {"param", e.param.empty() ? json(nullptr) : json(e.param)},
              {"code", e.status == 404 ? json("model_not_found") : json(nullptr)}}}};
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

ApiError FromStatus(const absl::Status& s) {
  ApiError e;
  e.message = std::string(s.message());
  switch (s.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
      e.status = 400;
      break;
    case absl::StatusCode::kResourceExhausted:
      e.status = 429;
      e.type = "rate_limit_error";
      break;
    case absl::StatusCode::kUnavailable:
      e.status = 503;
      e.type = "service_unavailable";
      break;
    case absl::StatusCode::kDeadlineExceeded:
      e.status = 504;
      e.type = "timeout";
      break;
    default:
      e.status = 500;
      e.type = "server_error";
  }
  return e;
}

namespace {

// Request parameters, read with their types checked; every error names the parameter.
class Params {
 public:
  explicit Params(const json& j) : j_(j) {}
  bool Has(const char* k) const { return j_.contains(k) && !j_.at(k).is_null(); }
  const json& At(const char* k) const { return j_.at(k); }
  std::optional<ApiError> Number(const char* k, double lo, double hi, double* out) const {
    if (!Has(k)) return std::nullopt;
    if (!At(k).is_number()) return Bad(k, "must be a number");
    const double v = At(k).get<double>();
    if (!(v >= lo && v <= hi)) return Bad(k, absl::StrCat("must be in [", lo, ", ", hi, "]"));
    *out = v;
    return std::nullopt;
  }
  std::optional<ApiError> Int(const char* k, int64_t lo, int64_t hi, int64_t* out) const {
    if (!Has(k)) return std::nullopt;
    if (!At(k).is_number_integer()) return Bad(k, "must be an integer");
    const int64_t v =
        At(k).is_number_unsigned()
            ? static_cast<int64_t>(std::min<uint64_t>(At(k).get<uint64_t>(), INT64_MAX))
            : At(k).get<int64_t>();
    if (v < lo || v > hi) return Bad(k, absl::StrCat("must be in [", lo, ", ", hi, "]"));
    *out = v;
    return std::nullopt;
  }
  std::optional<ApiError> Bool(const char* k, bool* out) const {
    if (!Has(k)) return std::nullopt;
    if (!At(k).is_boolean()) return Bad(k, "must be true or false");
    *out = At(k).get<bool>();
    return std::nullopt;
  }
  std::optional<ApiError> String(const char* k, std::string* out) const {
    if (!Has(k)) return std::nullopt;
    if (!At(k).is_string()) return Bad(k, "must be a string");
    *out = At(k).get<std::string>();
    return std::nullopt;
  }
  static ApiError Bad(const std::string& k, const std::string& why) {
    return {400, absl::StrCat("'", k, "' ", why), k};
  }

 private:
  const json& j_;
};

std::optional<ApiError> ParsePrompt(const Params& p, const OpenAiRequestContext& o, bool chat,
                                    std::vector<int32_t>* ids) {
  if (chat) {
    if (!p.Has("messages") || !p.At("messages").is_array() || p.At("messages").empty()) {
      return Params::Bad("messages", "must be a non-empty array of {role, content}");
    }
    if (o.tokenizer == nullptr) {
      return Params::Bad("messages",
                         "needs a tokenizer, and this model has none: use "
                         "/v1/completions with a prompt of token ids");
    }
    std::vector<ChatMessage> messages;
    for (size_t i = 0; i < p.At("messages").size(); ++i) {
      const json& m = p.At("messages")[i];
      const std::string where = absl::StrCat("messages[", i, "]");
      if (!m.is_object() || !m.contains("role") || !m["role"].is_string()) {
        return Params::Bad(where, "must be an object with a string 'role'");
      }
      std::string content;
      if (m.contains("content") && m["content"].is_string()) {
        content = m["content"].get<std::string>();
      } else if (m.contains("content") && m["content"].is_array()) {  // [{type: text, text}]
        for (const json& part : m["content"]) {
          if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") ||
              !part["text"].is_string()) {
            return Params::Bad(where + ".content", "only text parts are supported");
          }
          content += part["text"].get<std::string>();
        }
      } else {
        return Params::Bad(where + ".content", "must be a string or an array of text parts");
      }
      messages.push_back({m["role"].get<std::string>(), std::move(content)});
    }
    absl::StatusOr<std::string> text =
        o.tokenizer->ApplyChatTemplate(messages, /*add_generation_prompt=*/true);
    if (!text.ok()) return ApiError{400, std::string(text.status().message()), "messages"};
    absl::StatusOr<std::vector<int32_t>> enc = o.tokenizer->Encode(*text, false);
    if (!enc.ok()) return ApiError{400, std::string(enc.status().message()), "messages"};
    *ids = *std::move(enc);
    return std::nullopt;
  }
  if (!p.Has("prompt")) return Params::Bad("prompt", "is required");
  const json* prompt = &p.At("prompt");
  if (prompt->is_array() && prompt->size() == 1 && (*prompt)[0].is_string()) prompt = &(*prompt)[0];
  if (prompt->is_string()) {
    if (o.tokenizer == nullptr) {
      return Params::Bad("prompt", "must be token ids: this model has no tokenizer");
    }
    absl::StatusOr<std::vector<int32_t>> enc =
        o.tokenizer->Encode(prompt->get<std::string>(), true);
    if (!enc.ok()) return ApiError{400, std::string(enc.status().message()), "prompt"};
    *ids = *std::move(enc);
    return std::nullopt;
  }
  if (!prompt->is_array() || prompt->empty()) {
    return Params::Bad("prompt", "must be a string or a non-empty array of token ids");
  }
  for (const json& t : *prompt) {
    if (!t.is_number_integer() || t.get<int64_t>() < 0 || t.get<int64_t>() >= o.vocab_size) {
      return Params::Bad("prompt", absl::StrCat("token ids must be integers in [0, ", o.vocab_size,
                                                ") (one prompt per request)"));
    }
    ids->push_back(static_cast<int32_t>(t.get<int64_t>()));
  }
  return std::nullopt;
}

std::optional<ApiError> Parse(const json& j, const OpenAiRequestContext& o, bool chat,
                              ParsedOpenAiRequest* out) {
  if (!j.is_object()) return ApiError{400, "the body must be a JSON object", ""};
  const Params p(j);
  if (!p.Has("model") || !p.At("model").is_string()) {
    return Params::Bad("model", "is required (see GET /v1/models)");
  }
  if (p.At("model").get<std::string>() != o.model_id) {
    return ApiError{404,
                    absl::StrCat("the model '", p.At("model").get<std::string>(),
                                 "' does not exist here; this server serves '", o.model_id, "'"),
                    "model", "invalid_request_error"};
  }
  for (const char* unsupported :
       {"tools", "functions", "tool_choice", "suffix", "response_format"}) {
    if (p.Has(unsupported)) return Params::Bad(unsupported, "is not supported by this server");
  }
  if (p.Has("logit_bias") && !(p.At("logit_bias").is_object() && p.At("logit_bias").empty())) {
    return Params::Bad("logit_bias", "is not supported by this server");
  }
  int64_t n = 1, best_of = 1;
  if (auto e = p.Int("n", 1, 1, &n)) return Params::Bad("n", "must be 1 (one choice per request)");
  if (auto e = p.Int("best_of", 1, 1, &best_of)) return Params::Bad("best_of", "must be 1");
  bool echo = false;
  if (auto e = p.Bool("echo", &echo)) return e;
  if (echo) return Params::Bad("echo", "is not supported by this server");
  GenerationRequest& r = out->request;
  if (auto e = ParsePrompt(p, o, chat, &r.prompt)) return e;
  double temperature = 1.0, top_p = 1.0, presence = 0.0, frequency = 0.0;
  if (auto e = p.Number("temperature", 0.0, 2.0, &temperature)) return e;
  if (auto e = p.Number("top_p", 0.0, 1.0, &top_p)) return e;
  if (p.Has("top_p") && top_p == 0.0) return Params::Bad("top_p", "must be in (0, 1]");
  if (auto e = p.Number("presence_penalty", -2.0, 2.0, &presence)) return e;
  if (auto e = p.Number("frequency_penalty", -2.0, 2.0, &frequency)) return e;
  r.sampling.temperature = static_cast<float>(temperature);
  r.sampling.top_p = static_cast<float>(top_p);
  r.sampling.presence_penalty = static_cast<float>(presence);
  r.sampling.frequency_penalty = static_cast<float>(frequency);
  int64_t seed = -1;
  if (auto e = p.Int("seed", INT64_MIN, INT64_MAX, &seed)) return e;
  r.sampling.seed = p.Has("seed") ? static_cast<uint64_t>(seed) : std::random_device{}();
  int64_t max_tokens = chat ? 0 : 16;  // OpenAI's default for completions is 16
  const char* max_key =
      chat && p.Has("max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
  if (auto e = p.Int(max_key, 1, INT32_MAX, &max_tokens)) return e;
  r.max_new_tokens = static_cast<int32_t>(max_tokens);
  if (p.Has("stop")) {
    const json& stop = p.At("stop");
    if (stop.is_string()) {
      r.stop_strings.push_back(stop.get<std::string>());
    } else if (stop.is_array() && stop.size() <= 4) {
      for (const json& s : stop) {
        if (!s.is_string()) return Params::Bad("stop", "must be a string or up to 4 strings");
        r.stop_strings.push_back(s.get<std::string>());
      }
    } else {
      return Params::Bad("stop", "must be a string or up to 4 strings");
    }
  }
  if (chat) {
    if (auto e = p.Bool("logprobs", &r.logprobs)) return e;
    int64_t top = 0;
    if (auto e = p.Int("top_logprobs", 0, 20, &top)) return e;
    if (top > 0 && !r.logprobs) return Params::Bad("top_logprobs", "needs logprobs: true");
    r.top_logprobs = static_cast<int32_t>(top);
  } else if (p.Has("logprobs")) {
    int64_t top = 0;
    if (auto e = p.Int("logprobs", 0, 5, &top)) return e;
    r.logprobs = true;
    r.top_logprobs = static_cast<int32_t>(top);
  }
  // Extension (as vLLM's): generate max_tokens even past the end-of-sentence token.
  if (auto e = p.Bool("ignore_eos", &r.ignore_eos)) return e;
  // Extension (as vLLM's): prefix-cache isolation; the engine checks its length.
  if (auto e = p.String("cache_salt", &r.cache_salt)) return e;
  if (auto e = p.Bool("stream", &out->stream)) return e;
  if (p.Has("stream_options")) {
    const json& so = p.At("stream_options");
    if (!so.is_object()) return Params::Bad("stream_options", "must be an object");
    if (so.contains("include_usage")) {
      if (!so["include_usage"].is_boolean()) {
        return Params::Bad("stream_options.include_usage", "must be true or false");
      }
      out->include_usage = so["include_usage"].get<bool>();
    }
  }
  return std::nullopt;
}

}  // namespace

std::optional<ApiError> ParseOpenAiRequest(std::string_view body,
                                           const OpenAiRequestContext& context, bool chat,
                                           ParsedOpenAiRequest* out) {
  const json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return ApiError{400, "the body is not valid JSON", ""};
  return Parse(j, context, chat, out);
}

}  // namespace dsv2
