#include "coordinator/serving/engine_metrics.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace dsv2 {
namespace {

const std::vector<double> kLatency = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                      1,     2.5,  5,     10,   30,  60};
const std::vector<double> kFast = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                   0.05,   0.1,   0.25,   0.5,   1,    2.5};

}  // namespace

void Histogram::Observe(double seconds) {
  const size_t bucket = std::lower_bound(bounds_.begin(), bounds_.end(), seconds) - bounds_.begin();
  std::lock_guard<std::mutex> lock(mu_);
  ++counts_[bucket];
  sum_ += seconds;
  ++count_;
}

void Histogram::Render(const std::string& name, const std::string& help, std::string* out) const {
  std::lock_guard<std::mutex> lock(mu_);
  absl::StrAppend(out, "# HELP ", name, " ", help, "\n# TYPE ", name, " histogram\n");
  uint64_t cumulative = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cumulative += counts_[i];
    absl::StrAppend(out, name, "_bucket{le=\"", absl::StrFormat("%g", bounds_[i]), "\"} ",
                    cumulative, "\n");
  }
  absl::StrAppend(out, name, "_bucket{le=\"+Inf\"} ", count_, "\n", name, "_sum ",
                  absl::StrFormat("%.6f", sum_), "\n", name, "_count ", count_, "\n");
}

EngineMetrics::EngineMetrics()
    : time_to_first_token(kLatency),
      inter_token_latency(kFast),
      request_latency(kLatency),
      queue_time(kLatency),
      step_time(kFast) {}

void EngineMetrics::AddTokens(uint64_t prompt, uint64_t generated) {
  std::lock_guard<std::mutex> lock(mu);
  prompt_tokens += prompt;
  generation_tokens += generated;
}

std::string EngineMetrics::Render() const {
  std::string out;
  time_to_first_token.Render("dsv2_time_to_first_token_seconds",
                             "From arrival to the first generated token.", &out);
  inter_token_latency.Render("dsv2_inter_token_latency_seconds",
                             "Between consecutive generated tokens of a sequence.", &out);
  request_latency.Render("dsv2_request_latency_seconds", "From arrival to the last event.", &out);
  queue_time.Render("dsv2_queue_time_seconds", "From arrival to the first scheduled step.", &out);
  step_time.Render("dsv2_step_time_seconds", "One engine step (forward and token handling).", &out);
  std::lock_guard<std::mutex> lock(const_cast<std::mutex&>(mu));
  absl::StrAppend(&out,
                  "# HELP dsv2_prompt_tokens_total Prompt tokens of admitted requests.\n"
                  "# TYPE dsv2_prompt_tokens_total counter\ndsv2_prompt_tokens_total ",
                  prompt_tokens,
                  "\n# HELP dsv2_generation_tokens_total Tokens generated.\n"
                  "# TYPE dsv2_generation_tokens_total counter\ndsv2_generation_tokens_total ",
                  generation_tokens, "\n");
  return out;
}

}  // namespace dsv2
