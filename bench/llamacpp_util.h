// Shared by the small programs bench/llamacpp_setup.sh compiles against llama.cpp's C API
// (llamacpp_greedy.cc, llamacpp_logits.cc): token ids from "1,2,3", and a log callback that
// keeps only llama.cpp's errors.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "llama.h"

inline std::vector<llama_token> ParseIds(const std::string& text) {
  std::vector<llama_token> ids;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find(',', start);
    if (end == std::string::npos) end = text.size();
    ids.push_back(static_cast<llama_token>(std::strtol(text.c_str() + start, nullptr, 10)));
    start = end + 1;
  }
  return ids;
}

inline void QuietLog(ggml_log_level level, const char* text, void*) {
  if (level >= GGML_LOG_LEVEL_ERROR) std::fputs(text, stderr);
}
