// dsv2-cli: a command-line client for dsv2-coordinator (dsv2.v1.Inference and grpc.health.v1).
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "common/cli_flags.h"
#include "common/grpc_tls.h"
#include "coordinator/client/cli_commands.h"
#include "coordinator/client/cli_util.h"

ABSL_FLAG(std::string, server, "127.0.0.1:50051", "The server's address, host:port.");
ABSL_FLAG(std::string, tls_ca, "",
          "PEM CA certificate(s) to verify a TLS server with (dsv2-coordinator --tls-cert): "
          "connect over TLS instead of plaintext.");
ABSL_FLAG(std::string, tls_cert, "",
          "With --tls-ca: this client's PEM certificate, for a server that asks for one "
          "(dsv2-coordinator --tls-client-ca).");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls-cert.");
ABSL_FLAG(double, timeout, 0,
          "Deadline of the call in seconds; 0: none for generate and chat, 10 s for tokenize, "
          "info and health.");
ABSL_FLAG(int32_t, max_new_tokens, 0,
          "generate/chat: tokens to generate at most (0: the server's default).");
ABSL_FLAG(std::optional<float>, temperature, std::nullopt,
          "generate/chat: sampling temperature, 0 = greedy (unset: the server's 1.0).");
ABSL_FLAG(std::optional<float>, top_p, std::nullopt,
          "generate/chat: nucleus sampling, in (0, 1] (unset: 1.0, off).");
ABSL_FLAG(int32_t, top_k, 0, "generate/chat: sample from the k most likely tokens (0: off).");
ABSL_FLAG(std::optional<uint64_t>, seed, std::nullopt,
          "generate/chat: sampling seed; same seed, same request -> same text (unset: random).");
ABSL_FLAG(std::vector<std::string>, stop, {},
          "generate/chat: stop when the text contains this string (not printed). Repeat the "
          "flag or give a comma-separated list; C escapes such as \\n and \\x2c (a comma) are "
          "understood.");
ABSL_FLAG(std::string, token_ids, "",
          "generate: a comma-separated list of prompt token ids, instead of TEXT.");
ABSL_FLAG(std::optional<int32_t>, logprobs, std::nullopt,
          "generate/chat: print each generated token's log-probability and its N most likely "
          "alternatives (0..20) to stderr after the text.");
ABSL_FLAG(bool, ignore_eos, false,
          "generate/chat: keep generating past the end-of-sequence token.");
ABSL_FLAG(std::string, cache_salt, "",
          "generate/chat: share cached prompt prefixes only with requests of this salt.");
ABSL_FLAG(std::string, system, "", "chat: a system message sent before MESSAGE.");
ABSL_FLAG(bool, add_special_tokens, true,
          "generate/tokenize: let the tokenizer add BOS to a text prompt.");

namespace {

using namespace dsv2::cli;  // NOLINT: this file is the CLI

constexpr char kUsage[] =
    "a command-line client for dsv2-coordinator.\n"
    "\n"
    "  dsv2-cli [--server HOST:PORT] [--timeout S] SUBCOMMAND [ARGS] [FLAGS]\n"
    "\n"
    "Subcommands (flags may come before or after the positional argument):\n"
    "  generate \"TEXT\"    stream a completion of TEXT to stdout, then a summary line to stderr\n"
    "                     (finish reason, tokens, time to first token, ms/token). Flags:\n"
    "                     --max-new-tokens --temperature --top-p --top-k --seed --stop\n"
    "                     --ignore-eos --logprobs --add-special-tokens; --token-ids 1,2,3\n"
    "                     replaces TEXT. Ctrl-C cancels the request.\n"
    "  chat \"MESSAGE\"     the same for a chat: MESSAGE as the user's turn, --system as the\n"
    "                     system prompt (the server applies the model's chat template).\n"
    "  tokenize \"TEXT\"    print the token ids of TEXT and each token.\n"
    "  info               print the served model, the server's limits and scheduler statistics.\n"
    "  health             grpc.health.v1.Health/Check for service \"\": prints the status.\n"
    "\n"
    "Exit status: 0 success; 1 the call failed (the gRPC code and message are printed) or a\n"
    "flag could not be parsed; 2 a missing or bad subcommand or argument; 130 interrupted.\n"
    "health: 0 only when SERVING, 1 for any other status, 2 when the server cannot be reached.\n"
    "\n"
    "Examples:\n"
    "  dsv2-cli --server 127.0.0.1:50051 health\n"
    "  dsv2-cli generate \"Hello\" --max-new-tokens 8 --temperature 0\n"
    "  dsv2-cli generate --token-ids 100000,1234,42 --max-new-tokens 8 --logprobs 3\n"
    "  dsv2-cli chat \"What is MLA?\" --system \"Be brief.\" --stop '\\n\\n'\n"
    "\n"
    "Flag names take dashes or underscores (--max-new-tokens = --max_new_tokens).";

int Usage(const std::string& message) {
  std::fprintf(stderr, "dsv2-cli: %s (see dsv2-cli --help)\n", message.c_str());
  return kExitUsage;
}

// Every --stop value, split at commas, with C escapes undone.
absl::StatusOr<std::vector<std::string>> StopStrings(const std::vector<std::string>& raw) {
  std::vector<std::string> out;
  for (const std::string& value : raw) {
    for (absl::string_view piece : absl::StrSplit(value, ',', absl::SkipEmpty())) {
      std::string unescaped;
      std::string error;
      if (!absl::CUnescape(piece, &unescaped, &error)) {
        return absl::InvalidArgumentError("--stop '" + std::string(piece) + "': " + error);
      }
      out.push_back(std::move(unescaped));
    }
  }
  return out;
}

// Builds the request of generate/chat from the flags; an error is a usage error.
absl::StatusOr<dsv2::v1::GenerateRequest> GenerateRequestFromFlags(
    const std::string& command, const std::vector<std::string>& positional,
    const std::vector<std::string>& raw_stops) {
  dsv2::v1::GenerateRequest r;
  const std::string ids = absl::GetFlag(FLAGS_token_ids);
  if (command == "chat") {
    if (positional.size() != 1 || !ids.empty()) {
      return absl::InvalidArgumentError("chat takes exactly one MESSAGE (and no --token-ids)");
    }
    dsv2::v1::ChatMessages* chat = r.mutable_chat();
    if (const std::string system = absl::GetFlag(FLAGS_system); !system.empty()) {
      dsv2::v1::ChatMessage* m = chat->add_messages();
      m->set_role("system");
      m->set_content(system);
    }
    dsv2::v1::ChatMessage* m = chat->add_messages();
    m->set_role("user");
    m->set_content(positional[0]);
  } else if (!ids.empty()) {
    if (!positional.empty())
      return absl::InvalidArgumentError("give TEXT or --token-ids, not both");
    absl::StatusOr<std::vector<int32_t>> parsed = ParseTokenIds(ids);
    if (!parsed.ok()) return parsed.status();
    r.mutable_token_ids()->mutable_ids()->Add(parsed->begin(), parsed->end());
  } else {
    if (positional.size() != 1) {
      return absl::InvalidArgumentError("generate takes exactly one TEXT (quote it)");
    }
    r.set_text(positional[0]);
    r.set_add_special_tokens(absl::GetFlag(FLAGS_add_special_tokens));
  }
  dsv2::v1::SamplingParams* s = r.mutable_sampling();
  if (auto t = absl::GetFlag(FLAGS_temperature)) s->set_temperature(*t);
  if (auto p = absl::GetFlag(FLAGS_top_p)) s->set_top_p(*p);
  s->set_top_k(absl::GetFlag(FLAGS_top_k));
  if (auto seed = absl::GetFlag(FLAGS_seed)) s->set_seed(*seed);
  dsv2::v1::StoppingCriteria* st = r.mutable_stopping();
  if (const int32_t n = absl::GetFlag(FLAGS_max_new_tokens); n != 0) st->set_max_new_tokens(n);
  absl::StatusOr<std::vector<std::string>> stops = StopStrings(raw_stops);
  if (!stops.ok()) return stops.status();
  for (std::string& stop : *stops) st->add_stop(std::move(stop));
  st->set_ignore_eos(absl::GetFlag(FLAGS_ignore_eos));
  if (auto n = absl::GetFlag(FLAGS_logprobs)) {
    r.mutable_logprobs()->set_enabled(true);
    r.mutable_logprobs()->set_top_logprobs(*n);
  }
  r.set_cache_salt(absl::GetFlag(FLAGS_cache_salt));
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  // --stop may be repeated, which abseil flags do not allow: take its values out first.
  std::vector<std::string> args(argv, argv + argc);
  for (std::string& a : args) {
    if (a == "--") break;
    if (a == "-h") a = "--help";
  }
  const std::vector<std::string> raw_stops = ExtractRepeatedFlag("stop", &args);
  std::vector<char*> cargs;
  for (std::string& a : args) cargs.push_back(a.data());
  std::vector<std::string> positional =
      dsv2::ParseFlags(static_cast<int>(cargs.size()), cargs.data(), kUsage);
  if (positional.empty()) return Usage("no subcommand (generate, chat, tokenize, info, health)");
  const std::string command = positional[0];
  positional.erase(positional.begin());

  double timeout = absl::GetFlag(FLAGS_timeout);
  if (timeout < 0) return Usage("--timeout must be >= 0");
  if (timeout == 0 && command != "generate" && command != "chat") timeout = 10;

  std::optional<dsv2::v1::GenerateRequest> generate;
  std::optional<dsv2::v1::TokenizeRequest> tokenize;
  if (command == "generate" || command == "chat") {
    absl::StatusOr<dsv2::v1::GenerateRequest> r =
        GenerateRequestFromFlags(command, positional, raw_stops);
    if (!r.ok()) return Usage(std::string(r.status().message()));
    generate = std::move(*r);
  } else if (command == "tokenize") {
    if (positional.size() != 1) return Usage("tokenize takes exactly one TEXT (quote it)");
    tokenize.emplace();
    tokenize->set_text(positional[0]);
    tokenize->set_add_special_tokens(absl::GetFlag(FLAGS_add_special_tokens));
  } else if (command == "info" || command == "health") {
    if (!positional.empty()) return Usage(command + " takes no arguments");
  } else {
    return Usage("unknown subcommand '" + command + "'");
  }

  InterruptWatcher interrupts;  // before the channel: its threads inherit the signal mask
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> credentials =
      dsv2::MakeChannelCredentials({.ca = absl::GetFlag(FLAGS_tls_ca),
                                    .cert = absl::GetFlag(FLAGS_tls_cert),
                                    .key = absl::GetFlag(FLAGS_tls_key)});
  if (!credentials.ok()) return Usage(std::string(credentials.status().message()));
  std::shared_ptr<grpc::Channel> channel =
      grpc::CreateChannel(absl::GetFlag(FLAGS_server), *credentials);
  if (generate) return RunGenerate(channel, *generate, timeout, &interrupts);
  if (tokenize) return RunTokenize(channel, *tokenize, timeout, &interrupts);
  if (command == "info") return RunInfo(channel, timeout, &interrupts);
  return RunHealth(channel, timeout, &interrupts);
}
