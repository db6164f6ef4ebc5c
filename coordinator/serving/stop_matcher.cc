#include "coordinator/serving/stop_matcher.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_format.h"
#include "common/utf8.h"

namespace dsv2 {
absl::Status ValidateStopStrings(const std::vector<std::string>& stop_strings,
                                 const StopStringLimits& limits) {
  if (stop_strings.size() > static_cast<size_t>(limits.max_strings)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("stopping.stop has %d strings, at most %d allowed", stop_strings.size(),
                        limits.max_strings));
  }
  for (size_t i = 0; i < stop_strings.size(); ++i) {
    const std::string& s = stop_strings[i];
    if (s.size() > static_cast<size_t>(limits.max_bytes)) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "stopping.stop[%d] is %d bytes long, at most %d allowed", i, s.size(), limits.max_bytes));
    }
    if (!ValidateUtf8(s).ok()) {
      return absl::InvalidArgumentError(absl::StrFormat("stopping.stop[%d] is not valid UTF-8", i));
    }
  }
  return absl::OkStatus();
}

StopMatcher::StopMatcher(std::vector<std::string> stop_strings) {
  for (std::string& s : stop_strings) {
    if (s.empty()) continue;
    Pattern p;
    p.text = std::move(s);
    p.failure.assign(p.text.size(), 0);
    for (size_t i = 1, k = 0; i < p.text.size(); ++i) {
      while (k > 0 && p.text[i] != p.text[k]) k = p.failure[k - 1];
      if (p.text[i] == p.text[k]) ++k;
      p.failure[i] = static_cast<int32_t>(k);
    }
    patterns_.push_back(std::move(p));
  }
}

std::string StopMatcher::Push(std::string_view text) {
  if (stopped_) return {};
  pending_.append(text);
  const size_t start = pending_.size() - text.size();
  for (size_t i = start; i < pending_.size(); ++i) {
    const char c = pending_[i];
    size_t match = 0;  // longest stop string completed at byte i
    for (Pattern& p : patterns_) {
      int32_t k = p.state;  // < size: a completed match stops the stream
      while (k > 0 && p.text[k] != c) k = p.failure[k - 1];
      if (p.text[k] == c) ++k;
      p.state = k;
      if (k == static_cast<int32_t>(p.text.size())) match = std::max(match, p.text.size());
    }
    if (match > 0) {
      stopped_ = true;
      std::string out = pending_.substr(0, i + 1 - match);
      pending_.clear();
      return out;
    }
  }
  size_t hold = 0;  // longest suffix of the stream that may still become a stop string
  for (const Pattern& p : patterns_) hold = std::max(hold, static_cast<size_t>(p.state));
  const size_t emit =
      CompletePrefixLength(std::string_view(pending_).substr(0, pending_.size() - hold));
  std::string out = pending_.substr(0, emit);
  pending_.erase(0, emit);
  return out;
}

std::string StopMatcher::Flush() {
  if (stopped_) return {};
  for (Pattern& p : patterns_) p.state = 0;  // the held text is gone: a match starts afresh
  return std::exchange(pending_, std::string());
}

}  // namespace dsv2
