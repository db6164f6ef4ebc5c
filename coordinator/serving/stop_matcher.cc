#include "coordinator/serving/stop_matcher.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_format.h"

namespace dsv2 {
namespace {

// Length of the UTF-8 sequence a lead byte starts; 0 for a continuation or invalid byte.
int SequenceLength(unsigned char b) {
  if (b < 0x80) return 1;
  if (b >= 0xc2 && b <= 0xdf) return 2;
  if (b >= 0xe0 && b <= 0xef) return 3;
  if (b >= 0xf0 && b <= 0xf4) return 4;
  return 0;
}

bool IsContinuation(unsigned char b) { return (b & 0xc0) == 0x80; }

// Strict UTF-8: no overlong forms, surrogates or code points above U+10FFFF.
bool IsValidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char b = s[i];
    const int len = SequenceLength(b);
    if (len == 0 || i + len > s.size()) return false;
    for (int j = 1; j < len; ++j) {
      if (!IsContinuation(s[i + j])) return false;
    }
    const unsigned char b1 = len > 1 ? s[i + 1] : 0;
    if (b == 0xe0 && b1 < 0xa0) return false;   // overlong
    if (b == 0xed && b1 >= 0xa0) return false;  // surrogate
    if (b == 0xf0 && b1 < 0x90) return false;   // overlong
    if (b == 0xf4 && b1 >= 0x90) return false;  // above U+10FFFF
    i += len;
  }
  return true;
}

// The longest prefix of s that does not end inside an incomplete multi-byte character.
size_t CompletePrefixLength(std::string_view s) {
  const size_t n = s.size();
  for (size_t back = 1; back <= 4 && back <= n; ++back) {
    const unsigned char b = s[n - back];
    if (IsContinuation(b)) continue;
    const int len = SequenceLength(b);
    return (len > 1 && static_cast<size_t>(len) > back) ? n - back : n;
  }
  return n;  // stray continuation bytes: not a character we could complete, let them through
}

}  // namespace

absl::Status ValidateStopStrings(const std::vector<std::string>& stop_strings) {
  if (stop_strings.size() > static_cast<size_t>(kMaxStopStrings)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "stopping.stop has %d strings, at most %d allowed", stop_strings.size(), kMaxStopStrings));
  }
  for (size_t i = 0; i < stop_strings.size(); ++i) {
    const std::string& s = stop_strings[i];
    if (s.size() > static_cast<size_t>(kMaxStopStringBytes)) {
      return absl::InvalidArgumentError(
          absl::StrFormat("stopping.stop[%d] is %d bytes long, at most %d allowed", i, s.size(),
                          kMaxStopStringBytes));
    }
    if (!IsValidUtf8(s)) {
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
