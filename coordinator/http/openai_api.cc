#include "coordinator/http/openai_api.h"

#include <chrono>
#include <ctime>
#include <optional>

#include "absl/strings/str_cat.h"
#include "coordinator/http/openai_request.h"
#include "nlohmann/json.hpp"

namespace dsv2 {
namespace {

using namespace std::chrono_literals;

const char* FinishName(FinishReason f) {
  switch (f) {
    case FinishReason::kLength:
      return "length";
    case FinishReason::kNone:
      return nullptr;
    default:
      return "stop";
  }
}

std::string TokenText(const OpenAiApiOptions& o, int32_t id) {
  if (o.tokenizer == nullptr) return absl::StrCat("token_id:", id);
  absl::StatusOr<std::string> s = o.tokenizer->Decode({id}, /*skip_special=*/false);
  return s.ok() ? *s : absl::StrCat("token_id:", id);
}

json Bytes(const std::string& s) {
  json b = json::array();
  for (unsigned char c : s) b.push_back(static_cast<int>(c));
  return b;
}

// Logprobs of one event's tokens, appended in the response's format.
void AddLogprobs(const OpenAiApiOptions& o, bool chat, const GenerationEvent& ev, json* lp,
                 int64_t* text_offset) {
  for (const TokenLogprobs& t : ev.logprobs) {
    const std::string tok = TokenText(o, t.chosen.id);
    if (chat) {
      json top = json::array();
      for (const TokenLogprob& x : t.top) {
        const std::string s = TokenText(o, x.id);
        top.push_back({{"token", s}, {"logprob", x.logprob}, {"bytes", Bytes(s)}});
      }
      (*lp)["content"].push_back({{"token", tok},
                                  {"logprob", t.chosen.logprob},
                                  {"bytes", Bytes(tok)},
                                  {"top_logprobs", top}});
    } else {
      json top = json::object();
      for (const TokenLogprob& x : t.top) top[TokenText(o, x.id)] = x.logprob;
      (*lp)["tokens"].push_back(tok);
      (*lp)["token_logprobs"].push_back(t.chosen.logprob);
      (*lp)["top_logprobs"].push_back(top);
      (*lp)["text_offset"].push_back(*text_offset);
      *text_offset += static_cast<int64_t>(tok.size());
    }
  }
}

json EmptyLogprobs(bool chat) {
  if (chat) return {{"content", json::array()}};
  return {{"tokens", json::array()},
          {"token_logprobs", json::array()},
          {"top_logprobs", json::array()},
          {"text_offset", json::array()}};
}

std::string Dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

}  // namespace

void OpenAiApi::Handle(const HttpRequest& req, HttpResponder& out) {
  const std::string path = req.target.substr(0, req.target.find('?'));
  auto reply = [&](int status, const std::string& body, const char* type = "application/json") {
    (status < 400 ? http_ok_ : status < 500 ? http_client_error_ : http_server_error_)++;
    out.Send(status, body, type);
  };
  auto error = [&](const ApiError& e) { reply(e.status, ErrorBody(e)); };
  const bool post = req.method == "POST";
  if (path == "/v1/completions" || path == "/v1/chat/completions") {
    if (!post) return error({405, absl::StrCat(path, " takes POST"), ""});
    return Generate(req.body, path == "/v1/chat/completions", out);
  }
  if (req.method != "GET") return error({405, absl::StrCat(path, " takes GET"), ""});
  if (path == "/v1/models") {
    json m = {{"object", "list"},
              {"data", json::array({{{"id", o_.model_id},
                                     {"object", "model"},
                                     {"created", 0},
                                     {"owned_by", "dsv2-serve"}}})}};
    return reply(200, Dump(m));
  }
  if (path == "/health") {
    const bool ok = o_.serving == nullptr || o_.serving();
    return reply(ok ? 200 : 503, ok ? R"({"status":"serving"})" : R"({"status":"not serving"})");
  }
  if (path == "/metrics") return reply(200, Metrics(), "text/plain; version=0.0.4");
  error({404, absl::StrCat("no route ", path), ""});
}

void OpenAiApi::Generate(const std::string& body, bool chat, HttpResponder& out) {
  auto fail = [&](const ApiError& e) {
    (e.status < 500 ? http_client_error_ : http_server_error_)++;
    out.Send(e.status, ErrorBody(e));
  };
  ParsedOpenAiRequest p;
  const OpenAiRequestContext context{
      .tokenizer = o_.tokenizer, .model_id = o_.model_id, .vocab_size = o_.vocab_size};
  if (std::optional<ApiError> e = ParseOpenAiRequest(body, context, chat, &p)) return fail(*e);
  const std::string id = absl::StrCat(chat ? "chatcmpl-" : "cmpl-", next_id_.fetch_add(1));
  p.request.request_id = id;
  const bool want_logprobs = p.request.logprobs;
  absl::StatusOr<std::shared_ptr<RequestStream>> stream = o_.engine->Submit(std::move(p.request));
  if (!stream.ok()) return fail(FromStatus(stream.status()));
  const int64_t created = static_cast<int64_t>(std::time(nullptr));
  const char* object =
      chat ? (p.stream ? "chat.completion.chunk" : "chat.completion") : "text_completion";
  auto chunk = [&](json choice) {
    return json{{"id", id},
                {"object", object},
                {"created", created},
                {"model", o_.model_id},
                {"choices", json::array({std::move(choice)})}};
  };
  if (p.stream && !out.StartEvents()) return (*stream)->Cancel();
  if (p.stream) http_ok_++;
  std::string text;
  json logprobs = EmptyLogprobs(chat);
  int64_t text_offset = 0;
  bool first = true;
  GenerationEvent ev;
  while (true) {
    if (!(*stream)->Pop(&ev, 100ms)) continue;
    if (!ev.error.ok()) {
      if (!p.stream) return fail(FromStatus(ev.error));
      const ApiError e = FromStatus(ev.error);
      out.Event(ErrorBody(e));
      out.Event("[DONE]");
      return;
    }
    const char* finish = ev.final ? FinishName(ev.finish) : nullptr;
    if (p.stream) {
      json lp = EmptyLogprobs(chat);
      if (want_logprobs) AddLogprobs(o_, chat, ev, &lp, &text_offset);
      json choice = {{"index", 0},
                     {"logprobs", want_logprobs ? lp : json(nullptr)},
                     {"finish_reason", finish ? json(finish) : json(nullptr)}};
      if (chat) {
        json delta = {{"content", ev.text}};
        if (first) delta["role"] = "assistant";
        choice["delta"] = delta;
      } else {
        choice["text"] = ev.text;
      }
      first = false;
      if (!out.Event(Dump(chunk(choice)))) {  // the client is gone: free its sequence
        (*stream)->Cancel();
        return;
      }
    } else {
      text += ev.text;
      if (want_logprobs) AddLogprobs(o_, chat, ev, &logprobs, &text_offset);
    }
    if (!ev.final) continue;
    const json usage = {{"prompt_tokens", ev.prompt_tokens},
                        {"completion_tokens", ev.completion_tokens},
                        {"total_tokens", ev.prompt_tokens + ev.completion_tokens},
                        {"prompt_tokens_details", {{"cached_tokens", ev.cached_prompt_tokens}}}};
    if (p.stream) {
      if (p.include_usage) {
        json last = chunk(json(nullptr));
        last["choices"] = json::array();
        last["usage"] = usage;
        out.Event(Dump(last));
      }
      out.Event("[DONE]");
      return;
    }
    json choice = {{"index", 0},
                   {"logprobs", want_logprobs ? logprobs : json(nullptr)},
                   {"finish_reason", finish ? json(finish) : json("stop")}};
    if (chat) {
      choice["message"] = {{"role", "assistant"}, {"content", text}};
    } else {
      choice["text"] = text;
    }
    json response = chunk(choice);
    response["usage"] = usage;
    http_ok_++;
    out.Send(200, Dump(response));
    return;
  }
}

std::string OpenAiApi::Metrics() const {
  const EngineStats s = o_.engine->Stats();
  std::string m;
  auto metric = [&](const char* name, const char* type, const char* help,
                    const std::vector<std::pair<std::string, int64_t>>& values) {
    absl::StrAppend(&m, "# HELP ", name, " ", help, "\n# TYPE ", name, " ", type, "\n");
    for (const auto& [labels, v] : values) absl::StrAppend(&m, name, labels, " ", v, "\n");
  };
  metric("dsv2_requests_total", "counter", "Requests that ended, by outcome.",
         {{R"({outcome="finished"})", s.finished},
          {R"({outcome="cancelled"})", s.cancelled},
          {R"({outcome="expired"})", s.expired},
          {R"({outcome="failed"})", s.failed}});
  metric("dsv2_running_sequences", "gauge", "Sequences in the running batch.", {{"", s.running}});
  metric("dsv2_waiting_requests", "gauge", "Requests waiting for admission.", {{"", s.waiting}});
  metric("dsv2_cache_pages_used", "gauge", "Latent KV cache pages held by requests.",
         {{"", s.pages_total - s.pages_free}});
  metric("dsv2_cache_pages_total", "gauge", "Latent KV cache pages.", {{"", s.pages_total}});
  metric("dsv2_cache_pages_cached", "gauge",
         "Latent KV cache pages no request holds, kept for prefix reuse (evicted when needed).",
         {{"", s.pages_cached}});
  metric("dsv2_prefix_cache_queries_total", "counter",
         "Prompt tokens looked up in the prefix cache (at each admission).",
         {{"", s.prefix_cache_queries}});
  metric("dsv2_prefix_cache_hits_total", "counter",
         "Prompt tokens taken from the prefix cache instead of computed.",
         {{"", s.prefix_cache_hits}});
  metric("dsv2_preemptions_total", "counter", "Sequences preempted (recomputed later).",
         {{"", s.preemptions}});
  metric("dsv2_engine_steps_total", "counter", "Engine steps (forward calls).", {{"", s.steps}});
  metric("dsv2_http_responses_total", "counter", "HTTP API responses, by status class.",
         {{R"({class="2xx"})", http_ok_.load()},
          {R"({class="4xx"})", http_client_error_.load()},
          {R"({class="5xx"})", http_server_error_.load()}});
  m += o_.engine->metrics().Render();
  if (o_.extra_metrics) m += o_.extra_metrics();
  return m;
}

}  // namespace dsv2
