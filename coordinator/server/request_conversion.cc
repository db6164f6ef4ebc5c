#include "coordinator/server/request_conversion.h"

#include <random>

#include "absl/strings/str_cat.h"

namespace dsv2 {
namespace {

absl::Status Prefixed(const char* field, const absl::Status& s) {
  return absl::Status(s.code(), absl::StrCat(field, ": ", s.message()));
}

void FillLogprob(const TokenLogprob& in, const Tokenizer* tok, v1::TokenLogprob* out) {
  out->set_token_id(in.id);
  out->set_logprob(in.logprob);
  if (tok != nullptr) {
    absl::StatusOr<std::string> text = tok->Decode({in.id}, /*skip_special=*/false);
    if (text.ok()) out->set_token(*text);
  }
}

void FillLogprobs(const TokenLogprobs& in, const Tokenizer* tok, v1::TokenLogprobs* out) {
  FillLogprob(in.chosen, tok, out->mutable_chosen());
  for (const TokenLogprob& t : in.top) FillLogprob(t, tok, out->add_top());
}

}  // namespace

absl::StatusOr<std::vector<int32_t>> EncodeText(const Tokenizer* tokenizer, const std::string& text,
                                                bool add_special, const char* field) {
  if (tokenizer == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": this model has no tokenizer.json; send token_ids instead"));
  }
  // Empty text tokenizes as Hugging Face's tokenizers do: no ids, or BOS alone with special
  // tokens (a Generate prompt must still be non-empty: ToGenerationRequest checks that).
  absl::StatusOr<std::vector<int32_t>> ids = tokenizer->Encode(text, add_special);
  if (!ids.ok()) return Prefixed(field, ids.status());
  return ids;
}

absl::StatusOr<std::vector<int32_t>> EncodeChat(const Tokenizer* tokenizer,
                                                const v1::ChatMessages& chat, const char* field) {
  if (tokenizer == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": this model has no tokenizer.json; send token_ids instead"));
  }
  if (chat.messages().empty()) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": no messages"));
  }
  std::vector<ChatMessage> messages;
  for (const v1::ChatMessage& m : chat.messages()) messages.push_back({m.role(), m.content()});
  absl::StatusOr<std::string> prompt =
      tokenizer->ApplyChatTemplate(messages, /*add_generation_prompt=*/true);
  if (!prompt.ok()) return Prefixed(field, prompt.status());
  // The template writes BOS itself.
  absl::StatusOr<std::vector<int32_t>> ids = tokenizer->Encode(*prompt, /*add_special=*/false);
  if (!ids.ok()) return Prefixed(field, ids.status());
  return ids;
}

absl::StatusOr<GenerationRequest> ToGenerationRequest(const v1::GenerateRequest& r,
                                                      const Tokenizer* tokenizer) {
  GenerationRequest g;
  g.request_id = r.request_id();
  g.cache_salt = r.cache_salt();
  const bool add_special = r.has_add_special_tokens() ? r.add_special_tokens() : true;
  switch (r.prompt_case()) {
    case v1::GenerateRequest::kText: {
      if (r.text().empty()) return absl::InvalidArgumentError("text: the text is empty");
      absl::StatusOr<std::vector<int32_t>> ids =
          EncodeText(tokenizer, r.text(), add_special, "text");
      if (!ids.ok()) return ids.status();
      g.prompt = std::move(*ids);
      break;
    }
    case v1::GenerateRequest::kTokenIds:
      g.prompt.assign(r.token_ids().ids().begin(), r.token_ids().ids().end());
      if (g.prompt.empty()) return absl::InvalidArgumentError("token_ids: no token ids");
      break;
    case v1::GenerateRequest::kChat: {
      absl::StatusOr<std::vector<int32_t>> ids = EncodeChat(tokenizer, r.chat(), "chat");
      if (!ids.ok()) return ids.status();
      g.prompt = std::move(*ids);
      break;
    }
    case v1::GenerateRequest::PROMPT_NOT_SET:
      return absl::InvalidArgumentError("prompt: set one of text, token_ids or chat");
  }
  const v1::SamplingParams& s = r.sampling();
  g.sampling.temperature = s.has_temperature() ? s.temperature() : 1.0f;
  g.sampling.top_k = s.top_k();
  g.sampling.top_p = s.has_top_p() ? s.top_p() : 1.0f;
  g.sampling.min_p = s.min_p();
  g.sampling.repetition_penalty = s.repetition_penalty() == 0.0f ? 1.0f : s.repetition_penalty();
  g.sampling.frequency_penalty = s.frequency_penalty();
  g.sampling.presence_penalty = s.presence_penalty();
  if (s.has_seed()) {
    g.sampling.seed = s.seed();
  } else {
    std::random_device rd;
    g.sampling.seed = (static_cast<uint64_t>(rd()) << 32) ^ rd();
  }
  const v1::StoppingCriteria& st = r.stopping();
  if (st.has_max_new_tokens()) {
    if (st.max_new_tokens() < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("stopping.max_new_tokens: ", st.max_new_tokens(), " is below 1"));
    }
    g.max_new_tokens = st.max_new_tokens();
  }
  g.stop_strings.assign(st.stop().begin(), st.stop().end());
  g.stop_token_ids.assign(st.stop_token_ids().begin(), st.stop_token_ids().end());
  g.ignore_eos = st.ignore_eos();
  g.logprobs = r.logprobs().enabled() || r.logprobs().top_logprobs() > 0;
  g.top_logprobs = r.logprobs().top_logprobs();
  g.prompt_logprobs = r.logprobs().prompt_logprobs();
  return g;
}

v1::GenerateResponse ToResponse(const GenerationEvent& e, const std::string& request_id,
                                const Tokenizer* tokenizer) {
  v1::GenerateResponse out;
  out.set_request_id(request_id);
  for (int32_t t : e.tokens) out.add_token_ids(t);
  out.set_text(e.text);
  for (const TokenLogprobs& lp : e.logprobs) FillLogprobs(lp, tokenizer, out.add_logprobs());
  for (const TokenLogprobs& lp : e.prompt_logprobs) {
    FillLogprobs(lp, tokenizer, out.add_prompt_logprobs());
  }
  if (e.final) {
    switch (e.finish) {
      case FinishReason::kLength:
        out.set_finish_reason(v1::FINISH_REASON_LENGTH);
        break;
      case FinishReason::kStop:
        out.set_finish_reason(v1::FINISH_REASON_STOP);
        break;
      case FinishReason::kEos:
        out.set_finish_reason(v1::FINISH_REASON_EOS);
        break;
      case FinishReason::kCancelled:
        out.set_finish_reason(v1::FINISH_REASON_CANCELLED);
        break;
      case FinishReason::kNone:
        break;
    }
    out.mutable_usage()->set_prompt_tokens(e.prompt_tokens);
    out.mutable_usage()->set_completion_tokens(e.completion_tokens);
    out.mutable_usage()->set_cached_prompt_tokens(e.cached_prompt_tokens);
    v1::Timings* t = out.mutable_timings();
    t->set_queued_ms(e.timings.queued_ms);
    t->set_time_to_first_token_ms(e.timings.time_to_first_token_ms);
    t->set_mean_per_token_ms(e.timings.mean_per_token_ms);
    t->set_total_ms(e.timings.total_ms);
  }
  return out;
}

grpc::Status ToGrpcStatus(const absl::Status& s) {
  if (s.ok()) return grpc::Status::OK;
  // absl and gRPC share the canonical code numbers.
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

}  // namespace dsv2
