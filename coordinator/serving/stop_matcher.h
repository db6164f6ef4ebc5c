// Stop strings over streamed text: decides which decoded text is safe to send to the client.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"

namespace dsv2 {

// What a request may ask (dsv2-coordinator --max-stop-strings, --max-stop-string-bytes): every
// stop string is matched after every token, so these bound the work a request can cause.
struct StopStringLimits {
  int max_strings = 16;
  int max_bytes = 256;
};

// INVALID_ARGUMENT for more than max_strings strings ("stopping.stop has 17 strings, at most 16
// allowed"), a string over max_bytes, or one that is not valid UTF-8 ("stopping.stop[2] is not
// valid UTF-8"). Empty strings are allowed (and ignored).
absl::Status ValidateStopStrings(const std::vector<std::string>& stop_strings,
                                 const StopStringLimits& limits = {});

// Streaming matcher. Generation stops at the first point of the text where a stop string has
// been completed (as when checking the text after every token); if several complete at that same
// byte, the longest (earliest-starting) one is cut. Because a stop string is only acted on once
// complete, a stop string that lies inside a longer one ("bc" in "abcd") wins over it.
// The result does not depend on how the text is split into pushes.
class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stop_strings);  // empty strings ignored

  // Feeds newly decoded text; returns the text that is now safe to emit. Text that could still be
  // the beginning of a stop string is held back, and so is an incomplete UTF-8 character at the
  // end (the emitted text never splits one). Once a stop string appears, stopped() becomes true
  // and the returned text ends right before it; the stop string and anything after it are never
  // emitted, and later pushes return nothing.
  std::string Push(std::string_view text);

  // At the end of generation (no stop found): the held-back text. Nothing once stopped.
  // Text pushed after a Flush is matched on its own (no stop string spans the Flush).
  std::string Flush();

  bool stopped() const { return stopped_; }

 private:
  struct Pattern {
    std::string text;
    std::vector<int32_t> failure;  // KMP: longest proper border of text[0, i]
    int32_t state = 0;             // longest suffix of the stream that is a prefix of text
  };

  std::vector<Pattern> patterns_;
  std::string pending_;  // received but not yet emitted
  bool stopped_ = false;
};

}  // namespace dsv2
