// Start-up checks shared by the executables, so that a bad flag ends the program with one line
// naming it instead of a silent default, a wrapped port or a library's own log line:
//   - FlagRange: the values a numeric flag may take, checked once after parsing;
//   - CheckPortFree: a listening port that is out of range or taken, before any server (gRPC's
//     own error line would come first) binds it.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace dsv2 {

struct FlagRange {
  absl::string_view flag;  // the flag's name as defined (underscores)
  double min;
  double max;
  absl::string_view why = "";  // appended to the message, e.g. "0: one per core"
};

// INVALID_ARGUMENT for the first flag outside its range: "--port 99999: must be in [1, 65535]".
absl::Status CheckFlagRanges(absl::Span<const FlagRange> ranges);

// CheckFlagRanges, and on a violation "<program>: <why>" on stderr and exit(2).
void ExitOnBadFlags(const char* program, absl::Span<const FlagRange> ranges);

// Whether `host`:`port` can be bound (TCP, SO_REUSEADDR as servers set it): port 0 always can.
// The error names the flag: "--port 50051: 0.0.0.0:50051 is in use (Address already in use)".
absl::Status CheckPortFree(absl::string_view flag, const std::string& host, int port);

}  // namespace dsv2
