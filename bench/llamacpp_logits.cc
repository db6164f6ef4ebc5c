// llamacpp_logits: llama.cpp's next-token distributions over windows of token ids, for the
// fixture that checks our logits on a GGUF file made by llama.cpp's own tools (issue 30, part 4;
// tools/make_llamacpp_fixtures.sh compiles it against the llama.cpp it built: it is not part of
// our CMake build). Each window is one llama_decode from an empty cache with logits for every
// position; for each position the TOP_K most likely ids and their log-probabilities (log-softmax
// over the whole vocabulary, in double) are kept. The output is a safetensors file:
//   top_ids       I32 [windows, length, TOP_K]   most likely first
//   top_logprobs  F32 [windows, length, TOP_K]
// with the model file's description and llama.cpp's system info in its metadata.
//   llamacpp_logits MODEL.gguf WINDOWS.txt OUT.safetensors TOP_K THREADS
// WINDOWS.txt: one window a line, ids comma-separated, every line the same length.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <numeric>
#include <string>
#include <vector>

#include "llama.h"
#include "llamacpp_util.h"

namespace {

// A JSON string body: quotes and backslashes escaped, control characters dropped.
std::string JsonEscaped(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    if (static_cast<unsigned char>(c) >= 0x20) out += c;
  }
  return out;
}

bool WriteSafetensors(const std::string& path, const std::vector<int32_t>& ids,
                      const std::vector<float>& logprobs, const std::string& shape,
                      const std::string& metadata) {
  const size_t ids_bytes = ids.size() * 4, lp_bytes = logprobs.size() * 4;
  std::string header =
      "{\"top_ids\":{\"dtype\":\"I32\",\"shape\":[" + shape + "],\"data_offsets\":[0," +
      std::to_string(ids_bytes) + "]},\"top_logprobs\":{\"dtype\":\"F32\",\"shape\":[" + shape +
      "],\"data_offsets\":[" + std::to_string(ids_bytes) + "," +
      std::to_string(ids_bytes + lp_bytes) + "]},\"__metadata__\":{" + metadata + "}}";
  while (header.size() % 8 != 0) header += ' ';
  std::ofstream out(path, std::ios::binary);
  const uint64_t n = header.size();  // little-endian hosts only, as llama.cpp's CPU backend
  out.write(reinterpret_cast<const char*>(&n), 8);
  out << header;
  out.write(reinterpret_cast<const char*>(ids.data()), static_cast<std::streamsize>(ids_bytes));
  out.write(reinterpret_cast<const char*>(logprobs.data()), static_cast<std::streamsize>(lp_bytes));
  return static_cast<bool>(out);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 6) {
    std::fprintf(stderr,
                 "usage: llamacpp_logits MODEL.gguf WINDOWS.txt OUT.safetensors TOP_K THREADS\n");
    return 2;
  }
  std::vector<std::vector<llama_token>> windows;
  std::ifstream in(argv[2]);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) windows.push_back(ParseIds(line));
  }
  const int top_k = std::atoi(argv[4]);
  const int threads = std::atoi(argv[5]);
  if (windows.empty() || top_k < 1 || threads < 1) {
    std::fprintf(stderr, "llamacpp_logits: needs windows, TOP_K >= 1 and THREADS >= 1\n");
    return 2;
  }
  const size_t len = windows[0].size();
  for (const auto& w : windows) {
    if (w.size() != len) {
      std::fprintf(stderr, "llamacpp_logits: every window must have %zu ids\n", len);
      return 2;
    }
  }
  const LlamaRun run =
      OpenLlama("llamacpp_logits", argv[1], static_cast<uint32_t>(len + 16), threads);
  if (run.ctx == nullptr) return 1;
  llama_context* ctx = run.ctx;
  llama_model* model = run.model;
  const int32_t vocab = llama_vocab_n_tokens(llama_model_get_vocab(model));
  const int k = std::min(top_k, vocab);
  std::vector<int32_t> top_ids;
  std::vector<float> top_logprobs;
  std::vector<int32_t> order(vocab);
  llama_batch batch = llama_batch_init(static_cast<int32_t>(len), 0, 1);
  for (const auto& w : windows) {
    llama_memory_clear(llama_get_memory(ctx), true);
    batch.n_tokens = static_cast<int32_t>(len);
    for (size_t i = 0; i < len; ++i) {
      batch.token[i] = w[i];
      batch.pos[i] = static_cast<llama_pos>(i);
      batch.n_seq_id[i] = 1;
      batch.seq_id[i][0] = 0;
      batch.logits[i] = 1;
    }
    if (llama_decode(ctx, batch)) {
      std::fprintf(stderr, "llamacpp_logits: llama_decode failed\n");
      return 1;
    }
    for (size_t i = 0; i < len; ++i) {
      const float* logits = llama_get_logits_ith(ctx, static_cast<int32_t>(i));
      double max = logits[0], z = 0;
      for (int32_t v = 1; v < vocab; ++v) max = std::max<double>(max, logits[v]);
      for (int32_t v = 0; v < vocab; ++v) z += std::exp(logits[v] - max);
      const double log_z = max + std::log(z);
      std::iota(order.begin(), order.end(), 0);
      std::partial_sort(order.begin(), order.begin() + k, order.end(),
                        [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
      for (int j = 0; j < k; ++j) {
        top_ids.push_back(order[j]);
        top_logprobs.push_back(static_cast<float>(logits[order[j]] - log_z));
      }
    }
  }
  llama_batch_free(batch);
  char desc[256];
  llama_model_desc(model, desc, sizeof(desc));
  const std::string metadata = "\"model\":\"" + JsonEscaped(desc) + "\",\"system_info\":\"" +
                               JsonEscaped(llama_print_system_info()) + "\",\"threads\":\"" +
                               std::to_string(threads) + "\"";
  const std::string shape =
      std::to_string(windows.size()) + "," + std::to_string(len) + "," + std::to_string(k);
  if (!WriteSafetensors(argv[3], top_ids, top_logprobs, shape, metadata)) {
    std::fprintf(stderr, "llamacpp_logits: cannot write %s\n", argv[3]);
    return 1;
  }
  std::printf("llamacpp_logits: %zu windows x %zu positions, top %d of %d, model %s\n",
              windows.size(), len, k, vocab, desc);
  llama_free(ctx);
  llama_model_free(model);
  return 0;
}
