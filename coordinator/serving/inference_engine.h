// InferenceEngine: continuous batching over one model. Requests join the running batch between
// steps; each step runs, under a token budget, one token of every decoding sequence and chunks
// of prompts (chunked prefill) in a single forward call. The latent cache is paged: a request is
// admitted when pages are free, a running sequence that needs a page it cannot get preempts the
// most recently admitted one (whose pages are freed and whose tokens are recomputed later), and
// pages come back when a request finishes, is cancelled or fails. With prefix caching, full
// computed pages stay in the cache after that; a request whose tokens start like an earlier
// one's maps those pages and computes only the rest (LatentKvCache::MatchPrefix).
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "coordinator/model/decode_graphs.h"
#include "coordinator/model/deepseek_v2_model.h"
#include "coordinator/serving/engine_metrics.h"
#include "coordinator/serving/generation.h"
#include "coordinator/serving/sequence.h"
#include "coordinator/serving/stop_matcher.h"
#include "coordinator/tokenizer/tokenizer.h"
#include "kernels/cpu_context.h"
#include "kernels/exec_context.h"

namespace dsv2 {

struct InferenceEngineOptions {
  int64_t max_step_tokens = 256;  // token budget of one forward call
  // Prompt tokens a step may take while some sequence is decoding (inter-token latency).
  int64_t max_prefill_tokens_while_decoding = 64;
  int64_t max_running = 64;      // sequences in the running batch
  int64_t queue_capacity = 256;  // waiting requests; beyond: RESOURCE_EXHAUSTED
  // 0: on the CPU enough for max_running / 4 sequences of max_context within a quarter of the
  // memory available at start; on a GPU what gpu_memory_fraction of the device's memory leaves
  // after the weights and a step's workspace. At least one sequence of max_context.
  int64_t cache_pages = 0;
  double gpu_memory_fraction = 0.90;
  int64_t page_size = 64;
  // Prompt + generated tokens of one sequence. 0: the model's own limit
  // (max_position_embeddings) bounded by what the cache holds, but at least 32,768 (or the
  // model's limit when lower).
  int64_t max_context = 0;
  int32_t default_max_new_tokens = 256;
  int32_t max_new_tokens_limit = 4096;
  int threads = 0;  // CPU threads (0: one per core)
  // On a GPU, decode steps replay CUDA graphs per batch bucket; true: every step runs eagerly.
  bool enforce_eager = false;
  // Automatic prefix caching. A request that asks for prompt logprobs computes its whole
  // prompt (the logits of cached positions are not kept); its pages are cached for others.
  bool prefix_caching = true;
  int64_t max_cache_salt_bytes = 256;
  // Tests: after every step, check that each cache page is held, cached or free (exactly one)
  // and that the references match the block tables; failures count in EngineStats.
  bool audit_pages = false;
  StopStringLimits stop_limits = {};  // stop strings a request may give
};

struct EngineStats {
  int64_t running = 0;
  int64_t waiting = 0;
  int64_t pages_total = 0;
  int64_t pages_free = 0;    // including the cached ones, which are evicted when needed
  int64_t pages_cached = 0;  // kept for prefix reuse, held by no request
  int64_t page_size = 0;
  int64_t finished = 0;
  int64_t cancelled = 0;
  int64_t expired = 0;  // deadline exceeded
  int64_t failed = 0;   // other errors
  int64_t preemptions = 0;
  int64_t steps = 0;
  int64_t prefix_cache_queries = 0;  // tokens of the requests looked up in the prefix cache
  int64_t prefix_cache_hits = 0;     // of those, tokens taken from it
  int64_t page_audit_failures = 0;   // with audit_pages
  std::string first_page_audit_failure;
};

class InferenceEngine {
 public:
  // `tokenizer` may be null: then requests are token ids only and events carry no text. The
  // engine runs on the model's device. If its cache cannot be allocated, init_status() says
  // why and every Submit answers that error.
  InferenceEngine(const DeepseekV2Model& model, const Tokenizer* tokenizer,
                  const InferenceEngineOptions& options);
  const absl::Status& init_status() const { return init_status_; }
  ~InferenceEngine();  // cancels what is left and joins the engine thread
  InferenceEngine(const InferenceEngine&) = delete;
  InferenceEngine& operator=(const InferenceEngine&) = delete;

  // Validates the request (INVALID_ARGUMENT naming the field) and queues it
  // (RESOURCE_EXHAUSTED when the queue is full). Events arrive on the returned stream.
  absl::StatusOr<std::shared_ptr<RequestStream>> Submit(GenerationRequest request);

  // Shutdown, gracefully: from now on Submit answers UNAVAILABLE; the admitted requests run on
  // for up to `timeout`, then the rest end with UNAVAILABLE saying so. Returns when no request
  // is left, with the number that were cut off. Safe from any thread.
  int64_t Drain(std::chrono::milliseconds timeout);
  // Drain's first step alone: Submit answers UNAVAILABLE from now on.
  void StopAdmitting();

  EngineStats Stats() const;
  // Latency histograms and token counters (thread-safe to read).
  const EngineMetrics& metrics() const { return metrics_; }
  const InferenceEngineOptions& options() const { return options_; }

 private:
  struct ScheduledChunk {
    Sequence* seq;
    int64_t start;  // first token index
    int64_t count;
    bool all_logits;
  };

  absl::Status Validate(const GenerationRequest& r) const;
  void Loop();
  void ReapCancelledAndExpired();
  absl::Status AbortStatus() const;
  std::vector<ScheduledChunk> PlanStep();
  // Gives seq pages for its tokens up to `tokens`, writable from num_computed on.
  bool ReservePages(Sequence& seq, int64_t tokens);
  // A sequence about to be admitted maps the cached pages of its prefix.
  void MatchCachedPrefix(Sequence& seq);
  // True when a running sequence is computing the next full page of seq's tokens (same tokens
  // up to its end, same salt): seq then waits for it to enter the cache (a few steps) instead of
  // computing it a second time, as concurrent requests with one system prompt would.
  bool NextPagesBeingComputed(const Sequence& seq) const;
  void Preempt(Sequence& victim);
  void RunStep(const std::vector<ScheduledChunk>& plan);
  // rows: the chunk's full logit rows, or summary: its last row summarised.
  void ProcessLogits(const ScheduledChunk& chunk, const float* rows,
                     const LogitsSummaryRow* summary);
  void AppendToken(Sequence& seq, int32_t token, const float* raw_logits,
                   const LogitsSummaryRow* summary);
  void Finish(Sequence& seq, FinishReason reason, absl::Status error = absl::OkStatus());
  void ReleasePages(Sequence& seq);
  void PublishStats();

  const DeepseekV2Model& model_;
  const Tokenizer* tokenizer_;
  InferenceEngineOptions options_;
  CpuContext ctx_;
  std::unique_ptr<ExecContext> exec_;  // ctx_, or the model's CUDA stream
  absl::Status init_status_;
  std::optional<LatentKvCache> cache_;    // set when init_status_ is OK
  std::unique_ptr<DecodeGraphs> graphs_;  // GPU decode steps, unless enforce_eager

  // Submission queue, shared with Submit().
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<Sequence>> submitted_;
  bool stop_ = false;
  bool draining_ = false;      // Submit refuses
  absl::Status abort_status_;  // set: the engine thread ends every request with it
  EngineStats stats_;          // guarded by mu_, refreshed after each step

  // Engine-thread state.
  std::list<std::unique_ptr<Sequence>> waiting_;  // FIFO; preempted ones go first
  std::list<std::unique_ptr<Sequence>> running_;  // admission order
  LogitsResult logits_;
  EngineMetrics metrics_;
  std::vector<float> sample_scratch_;  // one row of logits for the sampler
  int64_t finished_ = 0, cancelled_ = 0, expired_ = 0, failed_ = 0, preemptions_ = 0, steps_ = 0;
  int64_t prefix_queries_ = 0, prefix_hits_ = 0, page_audit_failures_ = 0;
  std::string first_page_audit_failure_;
  std::thread thread_;
};

}  // namespace dsv2
