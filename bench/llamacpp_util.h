// Shared by the small programs bench/llamacpp_setup.sh compiles against llama.cpp's C API
// (llamacpp_greedy.cc, llamacpp_logits.cc): token ids from "1,2,3", a log callback that keeps
// only llama.cpp's errors, and a model with a context.
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

struct LlamaRun {
  llama_model* model = nullptr;
  llama_context* ctx = nullptr;  // null: loading the model or making the context failed
};

// `path` loaded with a context of n_ctx positions, all of them one batch, on `threads` threads;
// on failure the reason goes to stderr, prefixed with `program`.
inline LlamaRun OpenLlama(const char* program, const char* path, uint32_t n_ctx, int threads) {
  llama_log_set(QuietLog, nullptr);
  llama_backend_init();
  LlamaRun run;
  run.model = llama_model_load_from_file(path, llama_model_default_params());
  if (run.model == nullptr) {
    std::fprintf(stderr, "%s: cannot load %s\n", program, path);
    return run;
  }
  llama_context_params cparams = llama_context_default_params();
  cparams.n_ctx = n_ctx;
  cparams.n_batch = n_ctx;
  cparams.n_ubatch = n_ctx;
  cparams.n_threads = threads;
  cparams.n_threads_batch = threads;
  run.ctx = llama_init_from_model(run.model, cparams);
  if (run.ctx == nullptr) std::fprintf(stderr, "%s: cannot make a context\n", program);
  return run;
}
