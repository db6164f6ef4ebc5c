// The engine's state of one request while it is waiting, running or being preempted.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "coordinator/serving/generation.h"
#include "coordinator/serving/stop_matcher.h"
#include "coordinator/tokenizer/tokenizer.h"

namespace dsv2 {

struct Sequence {
  GenerationRequest request;
  std::shared_ptr<RequestStream> stream;
  std::vector<int32_t> tokens;  // prompt, then generated tokens
  int64_t prompt_len = 0;
  int32_t max_new_tokens = 0;         // after defaults and the context limit
  int64_t cache_seq = -1;             // id in the LatentKvCache while it holds pages, else -1
  int64_t num_computed = 0;           // tokens whose latent rows are in the cache
  int64_t cached_prompt_tokens = -1;  // prompt tokens the prefix cache gave at first admission
  bool prompt_logprobs_done = false;
  bool done = false;                           // finished; removed from the lists after the step
  std::vector<TokenLogprobs> prompt_logprobs;  // collected over the prefill chunks

  std::unique_ptr<Sampler> sampler;
  std::unique_ptr<IncrementalDetokenizer> detokenizer;  // null without a tokenizer
  std::unique_ptr<StopMatcher> stop_matcher;

  SteadyClock::time_point arrival;
  std::optional<SteadyClock::time_point> first_scheduled;
  std::optional<SteadyClock::time_point> first_token;
  SteadyClock::time_point last_token;

  int64_t generated() const { return static_cast<int64_t>(tokens.size()) - prompt_len; }
  // Tokens still to be run through the model before the next sampling.
  int64_t pending() const { return static_cast<int64_t>(tokens.size()) - num_computed; }
};

}  // namespace dsv2
