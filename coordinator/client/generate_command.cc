// dsv2-cli generate / chat: one streaming Generate call.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "coordinator/client/cli_commands.h"

namespace dsv2::cli {
namespace {

using Clock = std::chrono::steady_clock;

double MsBetween(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

// FINISH_REASON_LENGTH -> "length".
std::string FinishName(v1::FinishReason reason) {
  absl::string_view name = v1::FinishReason_Name(reason);
  absl::ConsumePrefix(&name, "FINISH_REASON_");
  return absl::AsciiStrToLower(name);
}

// What the client saw of the stream, measured from the arrival times of its messages.
struct StreamStats {
  Clock::time_point start;
  Clock::time_point first_token;
  Clock::time_point last_token;
  int64_t tokens = 0;
  int64_t messages = 0;
  bool at_line_start = true;  // whether stdout's last character is a newline or nothing
};

std::string FormatLogprob(const v1::TokenLogprob& lp) {
  return absl::StrFormat("%s (%d) %.4f", QuoteForDisplay(lp.token()), lp.token_id(), lp.logprob());
}

void PrintLogprobs(const std::vector<v1::TokenLogprobs>& all) {
  if (all.empty()) return;
  std::fprintf(stderr, "logprobs (token (id) logprob, then the most likely alternatives):\n");
  for (size_t i = 0; i < all.size(); ++i) {
    std::string line = absl::StrFormat("  %4d  %s", i, FormatLogprob(all[i].chosen()));
    if (all[i].top_size() > 0) absl::StrAppend(&line, "   top:");
    for (const v1::TokenLogprob& t : all[i].top()) absl::StrAppend(&line, "  ", FormatLogprob(t));
    std::fprintf(stderr, "%s\n", line.c_str());
  }
}

void PrintSummary(const v1::GenerateResponse& last, const StreamStats& s) {
  const Clock::time_point end = Clock::now();
  std::string line = absl::StrFormat("[finish: %s | prompt %d", FinishName(last.finish_reason()),
                                     last.usage().prompt_tokens());
  if (last.usage().cached_prompt_tokens() > 0) {
    absl::StrAppendFormat(&line, " (%d cached)", last.usage().cached_prompt_tokens());
  }
  absl::StrAppendFormat(&line, " + completion %d tokens", last.usage().completion_tokens());
  if (s.tokens > 0) {
    absl::StrAppendFormat(&line, " | TTFT %.1f ms", MsBetween(s.start, s.first_token));
  }
  if (s.tokens > 1) {
    absl::StrAppendFormat(
        &line, " | %.1f ms/token",
        MsBetween(s.first_token, s.last_token) / static_cast<double>(s.tokens - 1));
  }
  const v1::Timings& t = last.timings();
  absl::StrAppendFormat(
      &line, " | total %.1f ms | server: queued %.1f ms, TTFT %.1f ms, %.1f ms/token]",
      MsBetween(s.start, end), t.queued_ms(), t.time_to_first_token_ms(), t.mean_per_token_ms());
  std::fprintf(stderr, "%s\n", line.c_str());
}

}  // namespace

int RunGenerate(const std::shared_ptr<grpc::Channel>& channel, const v1::GenerateRequest& request,
                double timeout_s, InterruptWatcher* interrupts) {
  std::unique_ptr<v1::Inference::Stub> stub = v1::Inference::NewStub(channel);
  grpc::ClientContext context;
  SetTimeout(&context, timeout_s);
  interrupts->Watch(&context);
  const bool tty = isatty(STDOUT_FILENO) != 0;

  StreamStats stats;
  stats.start = Clock::now();
  std::unique_ptr<grpc::ClientReader<v1::GenerateResponse>> reader =
      stub->Generate(&context, request);
  v1::GenerateResponse response;
  v1::GenerateResponse last;
  bool have_final = false;
  std::vector<v1::TokenLogprobs> logprobs;
  std::vector<int32_t> ids;
  bool any_text = false;
  while (reader->Read(&response)) {
    const Clock::time_point now = Clock::now();
    ++stats.messages;
    if (response.token_ids_size() > 0) {
      if (stats.tokens == 0) stats.first_token = now;
      stats.last_token = now;
      stats.tokens += response.token_ids_size();
      ids.insert(ids.end(), response.token_ids().begin(), response.token_ids().end());
    }
    if (!response.text().empty()) {
      any_text = true;
      std::fwrite(response.text().data(), 1, response.text().size(), stdout);
      std::fflush(stdout);
      stats.at_line_start = response.text().back() == '\n';
    }
    logprobs.insert(logprobs.end(), response.logprobs().begin(), response.logprobs().end());
    if (response.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) {
      have_final = true;
      last = response;
    }
  }
  const grpc::Status status = reader->Finish();
  interrupts->Watch(nullptr);
  if (!any_text && !ids.empty()) {
    // A model without tokenizer.json streams ids only: show them instead of nothing.
    std::printf("token ids: %s\n", absl::StrJoin(ids, " ").c_str());
  }
  // The summary on stderr starts on a line of its own: a newline ends the text on a terminal;
  // otherwise the text is left exactly as generated and stderr gets the newline.
  if (!stats.at_line_start) std::fputc('\n', tty ? stdout : stderr);
  std::fflush(stdout);

  if (interrupts->interrupted()) {
    std::fprintf(stderr, "dsv2-cli: generate cancelled (Ctrl-C) after %lld tokens\n",
                 static_cast<long long>(stats.tokens));
    return kExitInterrupted;
  }
  if (!status.ok()) {
    std::fprintf(stderr, "dsv2-cli: generate failed: %s\n", DescribeStatus(status).c_str());
    return kExitRpcFailed;
  }
  if (!have_final) {
    std::fprintf(stderr,
                 "dsv2-cli: generate: the stream ended without a final response (no finish "
                 "reason) after %lld messages\n",
                 static_cast<long long>(stats.messages));
    return kExitRpcFailed;
  }
  PrintSummary(last, stats);
  PrintLogprobs(logprobs);
  return kExitOk;
}

}  // namespace dsv2::cli
