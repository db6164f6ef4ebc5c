// llamacpp_greedy: greedy generation from token ids through llama.cpp's C API, printing the new
// ids comma-separated on stdout, as `dsv2-generate --prompt-ids` does. bench/compare_llamacpp.sh
// compiles it against the llama.cpp it built (it is not part of our CMake build) and checks that
// both engines continue the same prompt with the same tokens.
//   llamacpp_greedy MODEL.gguf IDS(1,2,3) NEW_TOKENS THREADS
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "llama.h"
#include "llamacpp_util.h"

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: llamacpp_greedy MODEL.gguf IDS NEW_TOKENS THREADS\n");
    return 2;
  }
  std::vector<llama_token> prompt = ParseIds(argv[2]);
  const int new_tokens = std::atoi(argv[3]);
  const int threads = std::atoi(argv[4]);
  if (prompt.empty() || new_tokens < 1 || threads < 1) {
    std::fprintf(stderr, "llamacpp_greedy: needs ids, NEW_TOKENS >= 1 and THREADS >= 1\n");
    return 2;
  }
  const LlamaRun run = OpenLlama("llamacpp_greedy", argv[1],
                                 static_cast<uint32_t>(prompt.size() + new_tokens + 16), threads);
  if (run.ctx == nullptr) return 1;
  llama_context* ctx = run.ctx;
  llama_model* model = run.model;
  const int32_t vocab = llama_vocab_n_tokens(llama_model_get_vocab(model));
  std::vector<llama_token> next = prompt;
  for (int t = 0; t < new_tokens; ++t) {
    if (llama_decode(ctx, llama_batch_get_one(next.data(), static_cast<int32_t>(next.size())))) {
      std::fprintf(stderr, "llamacpp_greedy: llama_decode failed at step %d\n", t);
      return 1;
    }
    const float* logits = llama_get_logits_ith(ctx, -1);
    llama_token best = 0;
    for (llama_token i = 1; i < vocab; ++i) {
      if (logits[i] > logits[best]) best = i;
    }
    std::printf(t == 0 ? "%d" : ",%d", best);
    next.assign(1, best);
  }
  std::printf("\n");
  llama_free(ctx);
  llama_model_free(model);
  return 0;
}
