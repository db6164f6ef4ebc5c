// Command-line parsing for the executables: abseil flags, with `--max-new-tokens` accepted as
// a spelling of `--max_new_tokens` (dashes and underscores are interchangeable in flag names).
#pragma once

#include <algorithm>
#include <string>
#include <vector>

#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"

namespace dsv2 {

// Sets the usage text, rewrites dashed flag names and parses; returns positional arguments.
// --help lists the flags defined in the program's own main file, the benchmarks' and the shared
// device flags (--device, --dtype, --gpu).
inline std::vector<std::string> ParseFlags(int argc, char** argv, const char* usage) {
  std::string text(usage);
  if (!absl::StrContains(text, "dashes or underscores")) {
    text += "\n\nFlag names take dashes or underscores (--max-new-tokens = --max_new_tokens).";
  }
  absl::SetProgramUsageMessage(text);
  absl::FlagsUsageConfig config;
  // Abseil may pass the file as compiled or as normalize_filename returns it (the base name).
  auto ours = [](absl::string_view file) {
    return absl::EndsWith(file, "_main.cc") || absl::EndsWith(file, "_bench.cc") ||
           absl::EndsWith(file, "load_generator.cc") || absl::EndsWith(file, "device_flags.cc") ||
           absl::StrContains(file, "bench/");
  };
  config.contains_help_flags = ours;
  config.contains_helpshort_flags = ours;
  config.normalize_filename = [](absl::string_view file) {
    const size_t slash = file.rfind('/');
    return std::string(slash == absl::string_view::npos ? file : file.substr(slash + 1));
  };
  absl::SetFlagsUsageConfig(config);
  std::vector<std::string> storage(argv, argv + argc);
  bool positional_only = false;
  for (size_t i = 1; i < storage.size(); ++i) {
    std::string& a = storage[i];
    if (a == "--") positional_only = true;
    if (positional_only || a.size() < 3 || a[0] != '-') continue;
    const size_t start = a[1] == '-' ? 2 : 1;
    const size_t end = a.find('=');
    for (size_t j = start; j < std::min(end, a.size()); ++j) {
      if (a[j] == '-') a[j] = '_';
    }
  }
  std::vector<char*> args;
  for (std::string& s : storage) args.push_back(s.data());
  std::vector<char*> rest = absl::ParseCommandLine(static_cast<int>(args.size()), args.data());
  return std::vector<std::string>(rest.begin() + 1, rest.end());
}

}  // namespace dsv2
