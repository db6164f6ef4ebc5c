// What the inference engine takes (GenerationRequest) and what it streams back
// (GenerationEvent), and the channel between the engine thread and a request's handler.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "coordinator/serving/logprobs.h"
#include "coordinator/serving/sampler.h"

namespace dsv2 {

using SteadyClock = std::chrono::steady_clock;

struct GenerationRequest {
  std::string request_id;       // echoed in responses; the service assigns one when empty
  std::vector<int32_t> prompt;  // token ids, BOS included when wanted
  SamplingOptions sampling;
  int32_t max_new_tokens = 0;  // 0: the engine's default
  std::vector<std::string> stop_strings;
  std::vector<int32_t> stop_token_ids;
  bool ignore_eos = false;
  bool logprobs = false;
  int32_t top_logprobs = 0;  // 0..20
  bool prompt_logprobs = false;
  // Prefix caching: requests share cached prompt pages only with requests of the same salt
  // (tenants that must not observe each other's prompts through timing use different salts).
  std::string cache_salt;
  std::optional<SteadyClock::time_point> deadline;
};

enum class FinishReason { kNone, kLength, kStop, kEos, kCancelled };

struct TokenLogprobs {
  TokenLogprob chosen;
  std::vector<TokenLogprob> top;  // most likely first
};

struct GenerationTimings {
  double queued_ms = 0;
  double time_to_first_token_ms = 0;
  double mean_per_token_ms = 0;
  double total_ms = 0;
};

// One step's output for one request. The last event has `final` set and either an OK `error`
// with a finish reason, or the status the request ended with (e.g. DEADLINE_EXCEEDED).
struct GenerationEvent {
  std::vector<int32_t> tokens;
  std::string text;
  std::vector<TokenLogprobs> logprobs;         // one per token, when asked
  std::vector<TokenLogprobs> prompt_logprobs;  // once, when asked
  bool final = false;
  FinishReason finish = FinishReason::kNone;
  absl::Status error;
  int32_t prompt_tokens = 0;
  int32_t cached_prompt_tokens = 0;  // of prompt_tokens, those taken from the prefix cache
  int32_t completion_tokens = 0;
  GenerationTimings timings;
};

// Single producer (the engine), single consumer (the request's handler). The consumer can
// cancel; the engine notices within one step and ends the request with kCancelled.
class RequestStream {
 public:
  void Push(GenerationEvent event);
  // Waits up to `timeout` for the next event; false on timeout.
  bool Pop(GenerationEvent* event, std::chrono::milliseconds timeout);
  void Cancel();
  bool cancelled() const;

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<GenerationEvent> events_;
  bool cancelled_ = false;
};

}  // namespace dsv2
