// One scheduling step of the InferenceEngine: plan the batch, run it, turn logits into tokens,
// text and events.
#include <algorithm>
#include <iterator>

#include "absl/strings/str_cat.h"
#include "coordinator/serving/inference_engine.h"

namespace dsv2 {
namespace {

double Ms(SteadyClock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }
double Seconds(SteadyClock::duration d) { return std::chrono::duration<double>(d).count(); }

bool Contains(const std::vector<int32_t>& v, int64_t x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

}  // namespace

bool InferenceEngine::ReservePages(Sequence& seq, int64_t tokens) {
  if (seq.cache_seq < 0) seq.cache_seq = cache_->AddSequence(seq.request.cache_salt);
  return cache_->Reserve(seq.cache_seq, tokens).ok() &&
         cache_->PrepareWrite(*exec_, seq.cache_seq, seq.num_computed, tokens).ok();
}

bool InferenceEngine::NextPagesBeingComputed(const Sequence& seq) const {
  if (!options_.prefix_caching || seq.cache_seq < 0) return false;
  const int64_t ps = cache_->page_size();
  const int64_t next_page_end = (seq.num_computed / ps + 1) * ps;
  if (next_page_end > static_cast<int64_t>(seq.tokens.size())) return false;
  for (const auto& r : running_) {
    if (r->done || r->num_computed >= next_page_end ||
        static_cast<int64_t>(r->tokens.size()) < next_page_end ||
        r->request.cache_salt != seq.request.cache_salt) {
      continue;
    }
    if (std::equal(seq.tokens.begin(), seq.tokens.begin() + next_page_end, r->tokens.begin())) {
      return true;
    }
  }
  return false;
}

void InferenceEngine::MatchCachedPrefix(Sequence& seq) {
  if (!options_.prefix_caching || seq.cache_seq >= 0) return;
  // Prompt logprobs need the logits of every prompt position; cached pages do not keep them.
  if (seq.request.prompt_logprobs && !seq.prompt_logprobs_done) return;
  seq.cache_seq = cache_->AddSequence(seq.request.cache_salt);
  const int64_t hit = cache_->MatchPrefix(*exec_, seq.cache_seq, seq.tokens);
  // At least the last token runs through the model: its logits give the next token. When all
  // tokens are cached, its row is written again into a copy of the last page (copy on write).
  seq.num_computed = std::min<int64_t>(hit, static_cast<int64_t>(seq.tokens.size()) - 1);
}

void InferenceEngine::ReleasePages(Sequence& seq) {
  if (seq.cache_seq >= 0 && options_.prefix_caching) {
    cache_->CacheAndFreeSequence(seq.cache_seq, seq.tokens, seq.num_computed);
  } else if (seq.cache_seq >= 0) {
    cache_->FreeSequence(seq.cache_seq);
  }
  seq.cache_seq = -1;
  seq.num_computed = 0;
}

void InferenceEngine::Preempt(Sequence& victim) {
  // Recompute later: its tokens (prompt and generated so far) are prefilled again.
  ReleasePages(victim);
  if (victim.generated() == 0) {  // prompt logprobs not sent yet: they are computed again
    victim.prompt_logprobs.clear();
    victim.prompt_logprobs_done = false;
  }
  ++preemptions_;
  auto it = std::find_if(running_.begin(), running_.end(),
                         [&](const auto& s) { return s.get() == &victim; });
  waiting_.push_front(std::move(*it));
  running_.erase(it);
}

std::vector<InferenceEngine::ScheduledChunk> InferenceEngine::PlanStep() {
  std::vector<ScheduledChunk> plan;
  int64_t budget = options_.max_step_tokens;
  auto chunk_of = [&](Sequence& s, int64_t count) {
    const bool logprobs =
        s.request.prompt_logprobs && !s.prompt_logprobs_done && s.num_computed < s.prompt_len;
    return ScheduledChunk{&s, s.num_computed, count, logprobs};
  };
  // Prompt tokens cost a running stream its inter-token latency: while any sequence decodes,
  // a step prefills at most max_prefill_tokens_while_decoding of them.
  const bool decoding = std::any_of(running_.begin(), running_.end(), [](const auto& s) {
    return s->generated() > 0 && s->pending() == 1;
  });
  int64_t prefill_budget =
      decoding ? std::min(budget, options_.max_prefill_tokens_while_decoding) : budget;
  auto take = [&](const Sequence& s) {
    if (s.generated() > 0 && s.pending() == 1) return std::min<int64_t>(1, budget);
    return std::min({s.pending(), budget, prefill_budget});
  };
  // 1. The running batch, oldest first; decoding sequences need one token each.
  for (auto it = running_.begin(); it != running_.end() && budget > 0;) {
    Sequence& s = **it;
    const int64_t count = take(s);
    if (count == 0) {  // a prompt waiting for prefill budget
      ++it;
      continue;
    }
    bool ok = ReservePages(s, s.num_computed + count);
    // Out of pages: preempt the most recently admitted sequences after this one.
    while (!ok && std::next(it) != running_.end()) {
      Preempt(*running_.back());
      ok = ReservePages(s, s.num_computed + count);
    }
    if (!ok) {
      if (it == running_.begin()) {  // alone and still too big: cannot happen with sane sizing
        Finish(s, FinishReason::kNone,
               absl::ResourceExhaustedError("the latent KV cache cannot hold this sequence"));
        ++it;
        continue;
      }
      Sequence& self = s;
      ++it;
      Preempt(self);
      continue;
    }
    plan.push_back(chunk_of(s, count));
    budget -= count;
    if (s.pending() > 1 || s.generated() == 0) prefill_budget -= count;
    ++it;
  }
  // 2. Admit waiting requests in arrival order while the budget and free pages allow.
  for (auto it = waiting_.begin(); it != waiting_.end() && budget > 0 && prefill_budget > 0 &&
                                   static_cast<int64_t>(running_.size()) < options_.max_running;) {
    Sequence& s = **it;
    MatchCachedPrefix(s);
    if (NextPagesBeingComputed(s)) {  // wait for them rather than compute them twice
      ReleasePages(s);
      ++it;
      continue;
    }
    const int64_t count = take(s);
    if (!ReservePages(s, s.num_computed + count)) {
      ReleasePages(s);
      break;
    }
    if (options_.prefix_caching) {
      prefix_queries_ += static_cast<int64_t>(s.tokens.size());
      prefix_hits_ += s.num_computed;
    }
    if (!s.first_scheduled) {
      s.first_scheduled = SteadyClock::now();
      s.cached_prompt_tokens = std::min(s.num_computed, s.prompt_len);
      metrics_.queue_time.Observe(Seconds(*s.first_scheduled - s.arrival));
      metrics_.AddTokens(s.prompt_len, 0);
    }
    plan.push_back(chunk_of(s, count));
    budget -= count;
    prefill_budget -= count;
    running_.push_back(std::move(*it));
    it = waiting_.erase(it);
  }
  return plan;
}

void InferenceEngine::RunStep(const std::vector<ScheduledChunk>& plan) {
  const SteadyClock::time_point step_start = SteadyClock::now();
  ForwardBatch batch;
  // A chunk's last row is only summarised (argmax, normaliser, top logprobs) when that is all
  // its sequence needs: greedy without penalties, or still prefilling (the row goes unused).
  // Prompt-logprob chunks need every row in full.
  LogitsRequest request;
  for (const ScheduledChunk& c : plan) {
    batch.chunks.push_back({c.seq->cache_seq, c.start, c.count, c.all_logits});
    batch.tokens.insert(batch.tokens.end(), c.seq->tokens.begin() + c.start,
                        c.seq->tokens.begin() + c.start + c.count);
    const bool prefilling = c.seq->pending() > c.count;
    const bool summary = !c.all_logits && (prefilling || c.seq->sampler->GreedyWithoutPenalties());
    request.summarize.insert(request.summarize.end(), c.all_logits ? c.count : 1, summary);
    if (summary && c.seq->request.logprobs) {
      request.top_n = std::max(request.top_n, c.seq->request.top_logprobs);
    }
  }
  const absl::Status status = graphs_ != nullptr && graphs_->Accepts(batch)
                                  ? graphs_->Forward(*cache_, batch, request, &logits_)
                                  : model_.Forward(*exec_, *cache_, batch, request, &logits_);
  ++steps_;
  if (!status.ok()) {
    for (const ScheduledChunk& c : plan) {
      Finish(*c.seq, FinishReason::kNone,
             absl::Status(status.code(), absl::StrCat("forward failed: ", status.message())));
    }
    return;
  }
  const int64_t vocab = model_.config().vocab_size;
  const float* rows = logits_.full.data();
  const LogitsSummaryRow* summary = logits_.summaries.data();
  size_t row = 0;
  for (const ScheduledChunk& c : plan) {
    c.seq->num_computed += c.count;
    if (options_.prefix_caching) {  // before ProcessLogits, which may release the pages
      cache_->CachePages(c.seq->cache_seq, c.seq->tokens, c.seq->num_computed);
    }
    if (request.summarize[row]) {
      ProcessLogits(c, nullptr, summary++);
    } else {
      ProcessLogits(c, rows, nullptr);
      rows += (c.all_logits ? c.count : 1) * vocab;
    }
    row += c.all_logits ? c.count : 1;
  }
  metrics_.step_time.Observe(Seconds(SteadyClock::now() - step_start));
}

void InferenceEngine::ProcessLogits(const ScheduledChunk& c, const float* rows,
                                    const LogitsSummaryRow* summary) {
  Sequence& s = *c.seq;
  const int64_t vocab = model_.config().vocab_size;
  if (c.all_logits) {
    // Row r predicts token start + r + 1.
    for (int64_t r = 0; r < c.count; ++r) {
      const int64_t target = c.start + r + 1;
      if (target >= s.prompt_len) break;
      TokenLogprobs lp;
      ComputeLogprobs(rows + r * vocab, vocab, s.tokens[target], s.request.top_logprobs, &lp.chosen,
                      &lp.top);
      s.prompt_logprobs.push_back(std::move(lp));
    }
    if (c.start + c.count >= s.prompt_len) s.prompt_logprobs_done = true;
  }
  if (s.pending() > 0) return;  // still prefilling
  if (summary != nullptr) {     // greedy without penalties: the argmax, as Sample() would return
    AppendToken(s, summary->argmax, nullptr, summary);
    return;
  }
  const float* last = rows + (c.all_logits ? c.count - 1 : 0) * vocab;
  sample_scratch_.assign(last, last + vocab);  // the sampler edits logits in place
  AppendToken(s, s.sampler->Sample(sample_scratch_.data()), last, nullptr);
}

void InferenceEngine::AppendToken(Sequence& s, int32_t token, const float* raw_logits,
                                  const LogitsSummaryRow* summary) {
  const SteadyClock::time_point now = SteadyClock::now();
  s.sampler->Accept(token);
  s.tokens.push_back(token);
  if (!s.first_token) {
    s.first_token = now;
    metrics_.time_to_first_token.Observe(Seconds(now - s.arrival));
  } else {
    metrics_.inter_token_latency.Observe(Seconds(now - s.last_token));
  }
  s.last_token = now;
  metrics_.AddTokens(0, 1);
  GenerationEvent ev;
  ev.tokens.push_back(token);
  if (s.request.logprobs) {
    TokenLogprobs lp;
    if (summary != nullptr) {
      SummaryLogprobs(*summary, token, s.request.top_logprobs, &lp.chosen, &lp.top);
    } else {
      ComputeLogprobs(raw_logits, model_.config().vocab_size, token, s.request.top_logprobs,
                      &lp.chosen, &lp.top);
    }
    ev.logprobs.push_back(std::move(lp));
  }
  if (s.generated() == 1 && !s.prompt_logprobs.empty()) {
    ev.prompt_logprobs = std::move(s.prompt_logprobs);
    s.prompt_logprobs.clear();
  }
  const std::vector<int64_t>& eos_ids = model_.config().eos_token_ids;
  const bool eos =
      !s.request.ignore_eos && (std::find(eos_ids.begin(), eos_ids.end(), token) != eos_ids.end() ||
                                (tokenizer_ != nullptr && token == tokenizer_->eos_id()));
  const bool stop_token = Contains(s.request.stop_token_ids, token);
  FinishReason finish = FinishReason::kNone;
  if (eos) {
    finish = FinishReason::kEos;
  } else if (stop_token) {
    finish = FinishReason::kStop;
  } else if (s.detokenizer) {
    absl::StatusOr<std::string> delta = s.detokenizer->Add(token);
    ev.text = s.stop_matcher->Push(delta.ok() ? *delta : std::string());
    if (s.stop_matcher->stopped()) finish = FinishReason::kStop;
  }
  if (finish == FinishReason::kNone && s.generated() >= s.max_new_tokens) {
    finish = FinishReason::kLength;
  }
  if (finish != FinishReason::kNone && s.detokenizer && !s.stop_matcher->stopped()) {
    ev.text += s.stop_matcher->Push(s.detokenizer->Flush());
    if (!s.stop_matcher->stopped()) ev.text += s.stop_matcher->Flush();
  }
  if (finish == FinishReason::kNone) {
    s.stream->Push(std::move(ev));
    return;
  }
  ev.final = true;
  ev.finish = finish;
  ReleasePages(s);
  s.done = true;
  ++finished_;
  ev.prompt_tokens = static_cast<int32_t>(s.prompt_len);
  ev.cached_prompt_tokens = static_cast<int32_t>(std::max<int64_t>(0, s.cached_prompt_tokens));
  ev.completion_tokens = static_cast<int32_t>(s.generated());
  ev.timings.queued_ms = s.first_scheduled ? Ms(*s.first_scheduled - s.arrival) : 0;
  ev.timings.time_to_first_token_ms = Ms(*s.first_token - s.arrival);
  ev.timings.mean_per_token_ms =
      s.generated() > 1 ? Ms(s.last_token - *s.first_token) / (s.generated() - 1) : 0;
  ev.timings.total_ms = Ms(now - s.arrival);
  metrics_.request_latency.Observe(Seconds(now - s.arrival));
  s.stream->Push(std::move(ev));
}

void InferenceEngine::Finish(Sequence& s, FinishReason reason, absl::Status error) {
  if (s.done) return;
  ReleasePages(s);
  s.done = true;
  if (reason == FinishReason::kCancelled) {
    ++cancelled_;
  } else if (error.code() == absl::StatusCode::kDeadlineExceeded) {
    ++expired_;
  } else if (!error.ok()) {
    ++failed_;
  } else {
    ++finished_;
  }
  GenerationEvent ev;
  ev.final = true;
  ev.finish = reason;
  ev.error = std::move(error);
  ev.prompt_tokens = static_cast<int32_t>(s.prompt_len);
  ev.cached_prompt_tokens = static_cast<int32_t>(std::max<int64_t>(0, s.cached_prompt_tokens));
  ev.completion_tokens = static_cast<int32_t>(s.generated());
  ev.timings.total_ms = Ms(SteadyClock::now() - s.arrival);
  s.stream->Push(std::move(ev));
}

}  // namespace dsv2
