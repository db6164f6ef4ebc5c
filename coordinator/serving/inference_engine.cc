#include "coordinator/serving/inference_engine.h"

#include <algorithm>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "common/mapped_pages.h"
#include "common/status_macros.h"

namespace dsv2 {
namespace {

// Cache pages that fit in `fraction` of the GPU's memory beside what is used already (the
// weights) and a reserve for the step workspace (grows with the step's tokens).
int64_t GpuCachePages(const DeepseekV2Model& model, const InferenceEngineOptions& o) {
  absl::StatusOr<CudaDeviceInfo> info = ProbeCudaDevice(model.cuda_context()->info().device);
  if (!info.ok()) return 0;
  const int64_t used = info->total_memory - info->free_memory;
  const int64_t reserve = (int64_t{512} << 20) + o.max_step_tokens * (int64_t{2} << 20);
  const int64_t budget =
      static_cast<int64_t>(o.gpu_memory_fraction * static_cast<double>(info->total_memory)) - used -
      reserve;
  return std::max<int64_t>(0, budget / model.CachePageBytes(o.page_size));
}

// The share of the memory available at start that the CPU's cache may take with --cache-pages 0.
constexpr int64_t kCpuCacheMemoryDivisor = 4;
// The context a model gets by default at least, memory permitting or not (DeepSeek-V2-Lite's
// advertised 32k), unless the model's own limit is lower.
constexpr int64_t kMinDefaultContext = 32768;

InferenceEngineOptions WithDefaults(InferenceEngineOptions o, const DeepseekV2Model& model) {
  o.page_size = std::max<int64_t>(1, o.page_size);
  o.max_step_tokens = std::max<int64_t>(1, o.max_step_tokens);
  o.max_running = std::max<int64_t>(1, o.max_running);
  o.max_prefill_tokens_while_decoding = std::max<int64_t>(1, o.max_prefill_tokens_while_decoding);
  const int64_t model_limit = model.config().max_position_embeddings;
  const bool auto_context = o.max_context <= 0;
  if (auto_context) o.max_context = model_limit;
  const int64_t pages_per_context = (o.max_context + o.page_size - 1) / o.page_size;
  if (o.cache_pages <= 0 && model.device() == Device::kCuda)
    o.cache_pages = GpuCachePages(model, o);
  if (o.cache_pages <= 0) {
    // max_running / 4 sequences of the longest context, within a share of the free memory.
    o.cache_pages = std::max<int64_t>(1, o.max_running / 4) * pages_per_context;
    const int64_t available = AvailableMemoryBytes();
    if (available > 0) {
      const int64_t budget = available / kCpuCacheMemoryDivisor / model.CachePageBytes(o.page_size);
      o.cache_pages = std::max<int64_t>(1, std::min(o.cache_pages, budget));
    }
  }
  // The model's own context, bounded by the cache (one sequence may fill it), never below
  // kMinDefaultContext where the model allows that much.
  if (auto_context) {
    o.max_context = std::min(o.max_context, std::max(o.cache_pages * o.page_size,
                                                     std::min(model_limit, kMinDefaultContext)));
  }
  // One sequence of the longest context, and one step's chunk, must always fit.
  const int64_t step_pages = (o.max_step_tokens + o.page_size - 1) / o.page_size;
  o.cache_pages =
      std::max({o.cache_pages, (o.max_context + o.page_size - 1) / o.page_size, step_pages});
  return o;
}

}  // namespace

InferenceEngine::InferenceEngine(const DeepseekV2Model& model, const Tokenizer* tokenizer,
                                 const InferenceEngineOptions& options)
    : model_(model),
      tokenizer_(tokenizer),
      options_(WithDefaults(options, model)),
      ctx_(options.threads, DetectCpuIsa(), model.dtype()) {
  if (model.cuda_context() != nullptr) {
    exec_ = std::make_unique<ExecContext>(*model.cuda_context());
  } else {
    exec_ = std::make_unique<ExecContext>(ctx_);
  }
  absl::StatusOr<LatentKvCache> cache = model.MakeCache(options_.cache_pages, options_.page_size);
  if (!cache.ok()) {
    init_status_ = cache.status();
    return;
  }
  cache_.emplace(*std::move(cache));
  // CUDA graphs replay a step without the host; an expert backend needs the host inside every
  // MoE layer (the exchange), so such a model runs eagerly.
  if (model.device() == Device::kCuda && !options_.enforce_eager && !model.has_expert_backend()) {
    absl::StatusOr<std::unique_ptr<DecodeGraphs>> graphs =
        DecodeGraphs::Create(model, ctx_,
                             {.max_context = options_.max_context,
                              .max_batch = std::min<int64_t>(256, options_.max_running)});
    if (!graphs.ok()) {
      init_status_ = graphs.status();
      return;
    }
    graphs_ = *std::move(graphs);
  }
  PublishStats();
  thread_ = std::thread([this] { Loop(); });
}

InferenceEngine::~InferenceEngine() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

absl::Status InferenceEngine::Validate(const GenerationRequest& r) const {
  const ModelConfig& c = model_.config();
  if (r.prompt.empty()) return absl::InvalidArgumentError("prompt: the prompt is empty");
  for (size_t i = 0; i < r.prompt.size(); ++i) {
    if (r.prompt[i] < 0 || r.prompt[i] >= c.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat("token_ids.ids[", i, "]: token id ",
                                                     r.prompt[i], " is outside the vocabulary [0, ",
                                                     c.vocab_size, ")"));
    }
  }
  if (static_cast<int64_t>(r.prompt.size()) >= options_.max_context) {
    return absl::InvalidArgumentError(
        absl::StrCat("prompt: ", r.prompt.size(), " tokens do not fit the context limit of ",
                     options_.max_context, " tokens (prompt plus at least one new token)"));
  }
  if (r.max_new_tokens < 0 || r.max_new_tokens > options_.max_new_tokens_limit) {
    return absl::InvalidArgumentError(
        absl::StrCat("stopping.max_new_tokens: ", r.max_new_tokens, " is outside [1, ",
                     options_.max_new_tokens_limit, "] (0 means the default, ",
                     options_.default_max_new_tokens, ")"));
  }
  DSV2_RETURN_IF_ERROR(ValidateSamplingOptions(r.sampling));
  DSV2_RETURN_IF_ERROR(ValidateStopStrings(r.stop_strings, options_.stop_limits));
  for (size_t i = 0; i < r.stop_token_ids.size(); ++i) {
    if (r.stop_token_ids[i] < 0 || r.stop_token_ids[i] >= c.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat(
          "stopping.stop_token_ids[", i, "]: ", r.stop_token_ids[i], " is outside the vocabulary"));
    }
  }
  if (static_cast<int64_t>(r.cache_salt.size()) > options_.max_cache_salt_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("cache_salt: ", r.cache_salt.size(),
                                                   " bytes, at most ",
                                                   options_.max_cache_salt_bytes, " are allowed"));
  }
  if (r.top_logprobs < 0 || r.top_logprobs > 20) {
    return absl::InvalidArgumentError(
        absl::StrCat("logprobs.top_logprobs: ", r.top_logprobs, " is outside [0, 20]"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<RequestStream>> InferenceEngine::Submit(GenerationRequest request) {
  DSV2_RETURN_IF_ERROR(init_status_);
  DSV2_RETURN_IF_ERROR(Validate(request));
  auto seq = std::make_unique<Sequence>();
  seq->arrival = SteadyClock::now();
  seq->tokens = request.prompt;
  seq->prompt_len = static_cast<int64_t>(request.prompt.size());
  const int32_t asked =
      request.max_new_tokens > 0 ? request.max_new_tokens : options_.default_max_new_tokens;
  seq->max_new_tokens =
      static_cast<int32_t>(std::min<int64_t>(asked, options_.max_context - seq->prompt_len));
  seq->sampler =
      std::make_unique<Sampler>(request.sampling, model_.config().vocab_size, request.prompt);
  if (tokenizer_ != nullptr) {
    seq->detokenizer = std::make_unique<IncrementalDetokenizer>(*tokenizer_, /*skip_special=*/true);
  }
  seq->stop_matcher = std::make_unique<StopMatcher>(request.stop_strings);
  seq->stream = std::make_shared<RequestStream>();
  seq->request = std::move(request);
  std::shared_ptr<RequestStream> stream = seq->stream;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_) return absl::UnavailableError("the server is shutting down");
    if (draining_) {
      return absl::UnavailableError(
          "the server is draining for shutdown and takes no new requests; retry on another "
          "replica");
    }
    if (stats_.waiting + static_cast<int64_t>(submitted_.size()) >= options_.queue_capacity) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "the request queue is full (", options_.queue_capacity, " waiting); retry later"));
    }
    submitted_.push_back(std::move(seq));
  }
  cv_.notify_all();
  return stream;
}

void InferenceEngine::StopAdmitting() {
  std::lock_guard<std::mutex> lock(mu_);
  draining_ = true;
}

int64_t InferenceEngine::Drain(std::chrono::milliseconds timeout) {
  auto idle = [this] {
    std::lock_guard<std::mutex> lock(mu_);
    return submitted_.empty() && stats_.running == 0 && stats_.waiting == 0;
  };
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  StopAdmitting();
  if (!thread_.joinable()) return 0;  // never started (no cache)
  while (!idle() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  int64_t cut = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    cut = static_cast<int64_t>(submitted_.size()) + stats_.running + stats_.waiting;
    if (cut > 0) {
      abort_status_ = absl::UnavailableError(
          absl::StrCat("the server shut down before this request finished (drain timeout of ",
                       timeout.count() / 1000.0, " s)"));
    }
  }
  cv_.notify_all();
  while (!idle()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  return cut;
}

EngineStats InferenceEngine::Stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

void InferenceEngine::PublishStats() {
  std::lock_guard<std::mutex> lock(mu_);
  stats_.running = static_cast<int64_t>(running_.size());
  stats_.waiting = static_cast<int64_t>(waiting_.size());
  stats_.pages_total = cache_->num_pages();
  stats_.pages_free = cache_->free_pages();
  stats_.pages_cached = cache_->cached_pages();
  stats_.prefix_cache_queries = prefix_queries_;
  stats_.prefix_cache_hits = prefix_hits_;
  stats_.page_audit_failures = page_audit_failures_;
  stats_.first_page_audit_failure = first_page_audit_failure_;
  stats_.page_size = cache_->page_size();
  stats_.finished = finished_;
  stats_.cancelled = cancelled_;
  stats_.expired = expired_;
  stats_.failed = failed_;
  stats_.preemptions = preemptions_;
  stats_.steps = steps_;
}

void InferenceEngine::Loop() {
  if (CudaContext* cuda = model_.cuda_context(); cuda != nullptr) {
    // This thread launches the model's work: its current device must be the model's (--gpu).
    if (absl::Status s = cuda->MakeCurrent(); !s.ok()) {
      std::fprintf(stderr, "dsv2: engine thread: %s\n", std::string(s.message()).c_str());
    }
  }
  while (true) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      // Idle: sleep until a request arrives. Busy but blocked: re-check every few ms.
      const bool busy = !waiting_.empty() || !running_.empty();
      cv_.wait_for(lock, std::chrono::milliseconds(busy ? 0 : 100),
                   [&] { return stop_ || !submitted_.empty(); });
      if (stop_) break;
      while (!submitted_.empty()) {
        waiting_.push_back(std::move(submitted_.front()));
        submitted_.pop_front();
      }
      stats_.waiting = static_cast<int64_t>(waiting_.size());
    }
    if (absl::Status abort = AbortStatus(); !abort.ok()) {
      for (auto* list : {&running_, &waiting_}) {
        for (auto& s : *list) Finish(*s, FinishReason::kNone, abort);
        list->clear();
      }
      PublishStats();
      continue;
    }
    ReapCancelledAndExpired();
    const std::vector<ScheduledChunk> plan = PlanStep();
    PublishStats();  // admissions count before any event of this step reaches a client
    if (!plan.empty()) RunStep(plan);
    std::erase_if(running_, [](const auto& s) { return s->done; });
    std::erase_if(waiting_, [](const auto& s) { return s->done; });
    if (options_.audit_pages) {
      if (absl::Status audit = cache_->Audit(); !audit.ok() && page_audit_failures_++ == 0) {
        first_page_audit_failure_ = absl::StrCat("after step ", steps_, ": ", audit.message());
      }
    }
    PublishStats();
    if (plan.empty() && !waiting_.empty()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  }
  for (auto* list : {&running_, &waiting_}) {
    for (auto& s : *list) Finish(*s, FinishReason::kNone, absl::UnavailableError("server stopped"));
  }
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& s : submitted_) {
    GenerationEvent ev;
    ev.final = true;
    ev.error = absl::UnavailableError("server stopped");
    s->stream->Push(std::move(ev));
  }
}

absl::Status InferenceEngine::AbortStatus() const {
  std::lock_guard<std::mutex> lock(mu_);
  return abort_status_;
}

void InferenceEngine::ReapCancelledAndExpired() {
  const SteadyClock::time_point now = SteadyClock::now();
  for (auto* list : {&running_, &waiting_}) {
    for (auto& s : *list) {
      if (s->done) continue;
      if (s->stream->cancelled()) {
        Finish(*s, FinishReason::kCancelled);
      } else if (s->request.deadline && now >= *s->request.deadline) {
        Finish(*s, FinishReason::kNone,
               absl::DeadlineExceededError(
                   absl::StrCat("deadline exceeded after ", s->generated(), " generated tokens")));
      }
    }
    std::erase_if(*list, [](const auto& s) { return s->done; });
  }
}

}  // namespace dsv2
