// EngineMetrics: the engine's latency histograms and token counters, observed on the engine
// thread and read (as Prometheus text) from any other. Together with EngineStats they are the
// one source of what GetModelInfo and /metrics report.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

namespace dsv2 {

// A cumulative histogram with fixed upper bounds (seconds), as Prometheus expects.
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds)
      : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}
  void Observe(double seconds);
  // The text exposition lines of `name` (HELP and TYPE included).
  void Render(const std::string& name, const std::string& help, std::string* out) const;

 private:
  std::vector<double> bounds_;
  mutable std::mutex mu_;
  std::vector<uint64_t> counts_;  // guarded by mu_; counts_[i]: observations <= bounds_[i]
  double sum_ = 0;                // guarded by mu_
  uint64_t count_ = 0;            // guarded by mu_
};

struct EngineMetrics {
  EngineMetrics();
  Histogram time_to_first_token;  // arrival -> first generated token
  Histogram inter_token_latency;  // between consecutive tokens of one sequence
  Histogram request_latency;      // arrival -> the last event
  Histogram queue_time;           // arrival -> first scheduled
  Histogram step_time;            // one engine step (forward and token handling)
  std::mutex mu;
  uint64_t prompt_tokens = 0;      // guarded by mu: of admitted requests (once each)
  uint64_t generation_tokens = 0;  // guarded by mu

  void AddTokens(uint64_t prompt, uint64_t generated);
  // Histograms and token counters as Prometheus text.
  std::string Render() const;
};

}  // namespace dsv2
