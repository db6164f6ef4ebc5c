#include "coordinator/client/cli_util.h"

#include <pthread.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <ctime>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace dsv2::cli {

const char* StatusCodeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return "OK";
    case grpc::StatusCode::CANCELLED:
      return "CANCELLED";
    case grpc::StatusCode::UNKNOWN:
      return "UNKNOWN";
    case grpc::StatusCode::INVALID_ARGUMENT:
      return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND:
      return "NOT_FOUND";
    case grpc::StatusCode::ALREADY_EXISTS:
      return "ALREADY_EXISTS";
    case grpc::StatusCode::PERMISSION_DENIED:
      return "PERMISSION_DENIED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION:
      return "FAILED_PRECONDITION";
    case grpc::StatusCode::ABORTED:
      return "ABORTED";
    case grpc::StatusCode::OUT_OF_RANGE:
      return "OUT_OF_RANGE";
    case grpc::StatusCode::UNIMPLEMENTED:
      return "UNIMPLEMENTED";
    case grpc::StatusCode::INTERNAL:
      return "INTERNAL";
    case grpc::StatusCode::UNAVAILABLE:
      return "UNAVAILABLE";
    case grpc::StatusCode::DATA_LOSS:
      return "DATA_LOSS";
    case grpc::StatusCode::UNAUTHENTICATED:
      return "UNAUTHENTICATED";
    default:
      return "UNRECOGNIZED_CODE";
  }
}

std::string DescribeStatus(const grpc::Status& status) {
  return absl::StrCat(StatusCodeName(status.error_code()), ": ", status.error_message());
}

void SetTimeout(grpc::ClientContext* context, double seconds) {
  if (seconds <= 0) return;
  context->set_deadline(std::chrono::system_clock::now() +
                        std::chrono::microseconds(static_cast<int64_t>(seconds * 1e6)));
}

std::string QuoteForDisplay(const std::string& text) {
  std::string out = "\"";
  for (unsigned char c : text) {
    switch (c) {
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\r':
        out += "\\r";
        break;
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      default:
        if (c < 0x20 || c == 0x7f) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\x%02x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + "\"";
}

absl::StatusOr<std::vector<int32_t>> ParseTokenIds(const std::string& list) {
  std::vector<int32_t> ids;
  for (absl::string_view piece : absl::StrSplit(list, ',')) {
    piece = absl::StripAsciiWhitespace(piece);
    if (piece.empty()) continue;
    int32_t id = 0;
    if (!absl::SimpleAtoi(piece, &id) || id < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("--token-ids: '", piece, "' is not a non-negative integer"));
    }
    ids.push_back(id);
  }
  if (ids.empty()) return absl::InvalidArgumentError("--token-ids: no ids given");
  return ids;
}

std::vector<std::string> ExtractRepeatedFlag(const std::string& name,
                                             std::vector<std::string>* args) {
  std::vector<std::string> values;
  std::vector<std::string> kept;
  bool positional_only = false;
  for (size_t i = 0; i < args->size(); ++i) {
    const std::string& a = (*args)[i];
    if (a == "--") positional_only = true;
    const size_t dashes = a.rfind("--", 0) == 0 ? 2 : (a.rfind("-", 0) == 0 ? 1 : 0);
    if (!positional_only && i > 0 && dashes > 0) {
      const std::string bare = a.substr(dashes);
      if (bare == name && i + 1 < args->size()) {
        values.push_back((*args)[++i]);
        continue;
      }
      if (bare.rfind(name + "=", 0) == 0) {
        values.push_back(bare.substr(name.size() + 1));
        continue;
      }
    }
    kept.push_back(a);
  }
  *args = std::move(kept);
  return values;
}

InterruptWatcher::InterruptWatcher() {
  sigemptyset(&signals_);
  sigaddset(&signals_, SIGINT);
  sigaddset(&signals_, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals_, nullptr);
  thread_ = std::thread([this] { Loop(); });
}

InterruptWatcher::~InterruptWatcher() {
  stop_ = true;
  thread_.join();
}

void InterruptWatcher::Watch(grpc::ClientContext* context) {
  std::lock_guard<std::mutex> lock(mu_);
  context_ = context;
}

void InterruptWatcher::Loop() {
  const timespec poll = {0, 50'000'000};  // 50 ms: how fast the destructor returns
  while (!stop_) {
    if (sigtimedwait(&signals_, nullptr, &poll) < 0) continue;
    std::lock_guard<std::mutex> lock(mu_);
    if (interrupted_.exchange(true) || context_ == nullptr) {
      static const char kMsg[] = "\ndsv2-cli: interrupted\n";
      [[maybe_unused]] ssize_t n = write(STDERR_FILENO, kMsg, sizeof(kMsg) - 1);
      _exit(kExitInterrupted);
    }
    context_->TryCancel();
  }
}

}  // namespace dsv2::cli
