// The continuous-batching engine on the golden lite fixture, in process (no gRPC): batched,
// chunked and preempted greedy runs give exactly the reference's tokens; cancellation and
// deadlines free the pages; the queue bound and validation answer at once.
// Built twice: on the CPU here, and as tests/gpu's engine_cuda_test (DSV2_ENGINE_ON_CUDA) with
// the model on the GPU in float32, skipped without a CUDA device.
#include "coordinator/serving/inference_engine.h"

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/engine_test_fixture.h"

namespace dsv2 {
namespace {

using ::testing::HasSubstr;
using namespace std::chrono_literals;

TEST_F(EngineTest, ConcurrentGreedyStreamsMatchReference) {
  // 36 streams: the three reference prompts, truncated and extended, all at once; tiny steps
  // force chunked prefill to interleave with decoding.
  InferenceEngine engine(
      *model_, nullptr,
      {.max_step_tokens = 24, .max_running = 40, .page_size = 4, .max_context = 64});
  std::vector<std::shared_ptr<RequestStream>> streams;
  std::vector<size_t> which;
  for (int i = 0; i < 36; ++i) {
    const size_t r = i % refs_.size();
    auto s = engine.Submit(Greedy(refs_[r].prompt, 4 + (i * 7) % 17));
    ASSERT_TRUE(s.ok()) << s.status();
    streams.push_back(*s);
    which.push_back(r);
  }
  for (size_t i = 0; i < streams.size(); ++i) {
    GenerationEvent last;
    const std::vector<int32_t> got = Collect(*streams[i], &last);
    const std::vector<int32_t>& want = refs_[which[i]].greedy;
    ASSERT_EQ(got, std::vector<int32_t>(want.begin(), want.begin() + got.size())) << "stream " << i;
    EXPECT_EQ(static_cast<int>(got.size()), 4 + (static_cast<int>(i) * 7) % 17);
    EXPECT_EQ(last.finish, FinishReason::kLength);
    EXPECT_EQ(last.completion_tokens, static_cast<int>(got.size()));
  }
  WaitForFreePages(engine);
}

TEST_F(EngineTest, PrefillCapWhileDecodingKeepsOutputsExact) {
  // Prompts arrive while others decode and may only take 3 prompt tokens per step.
  InferenceEngine engine(*model_, nullptr,
                         {.max_step_tokens = 64,
                          .max_prefill_tokens_while_decoding = 3,
                          .page_size = 4,
                          .max_context = 64});
  std::vector<std::shared_ptr<RequestStream>> streams;
  for (int i = 0; i < 9; ++i) {
    streams.push_back(*engine.Submit(Greedy(refs_[i % 3].prompt, 12)));
    if (i == 0) {  // let the first one start decoding before the rest arrive
      GenerationEvent e;
      ASSERT_TRUE(streams[0]->Pop(&e, 30000ms));
      ASSERT_EQ(e.tokens[0], refs_[0].greedy[0]);
    }
  }
  const std::vector<int32_t> first = Collect(*streams[0]);
  EXPECT_EQ(first, std::vector<int32_t>(refs_[0].greedy.begin() + 1, refs_[0].greedy.begin() + 12));
  for (int i = 1; i < 9; ++i) {
    EXPECT_EQ(Collect(*streams[i]),
              std::vector<int32_t>(refs_[i % 3].greedy.begin(), refs_[i % 3].greedy.begin() + 12))
        << i;
  }
  WaitForFreePages(engine);
}

TEST_F(EngineTest, PreemptionUnderCachePressureKeepsOutputsExact) {
  // 6 pages of 4 tokens: three 20-token continuations cannot all stay resident.
  InferenceEngine engine(*model_, nullptr,
                         {.max_step_tokens = 16,
                          .max_running = 8,
                          .cache_pages = 12,
                          .page_size = 4,
                          .max_context = 40});
  std::vector<std::shared_ptr<RequestStream>> streams;
  for (int i = 0; i < 6; ++i) streams.push_back(*engine.Submit(Greedy(refs_[i % 3].prompt, 20)));
  for (int i = 0; i < 6; ++i) EXPECT_EQ(Collect(*streams[i]), refs_[i % 3].greedy) << i;
  EXPECT_GT(engine.Stats().preemptions, 0);
  WaitForFreePages(engine);
}

TEST_F(EngineTest, PromptLogprobsSurvivePreemptionDuringPrefill) {
  // Tiny steps and cache: prompts are preempted while still prefilling, then recomputed.
  InferenceEngine engine(*model_, nullptr,
                         {.max_step_tokens = 6,
                          .max_running = 8,
                          .cache_pages = 8,
                          .page_size = 4,
                          .max_context = 40});
  std::vector<std::shared_ptr<RequestStream>> streams;
  for (int i = 0; i < 6; ++i) {
    GenerationRequest r = Greedy(refs_[i % 3].prompt, 20);
    r.prompt_logprobs = true;
    streams.push_back(*engine.Submit(r));
  }
  for (int i = 0; i < 6; ++i) {
    GenerationEvent e;
    ASSERT_TRUE(streams[i]->Pop(&e, 30000ms));
    EXPECT_EQ(e.prompt_logprobs.size(), refs_[i % 3].prompt.size() - 1) << i;
    Collect(*streams[i]);
  }
  EXPECT_GT(engine.Stats().preemptions, 0);
  WaitForFreePages(engine);
}

TEST_F(EngineTest, CancelFreesPagesWithinAStep) {
  InferenceEngine engine(*model_, nullptr, {.page_size = 4, .max_context = 1024});
  auto s = *engine.Submit(Greedy(refs_[0].prompt, 1000));
  GenerationEvent e;
  ASSERT_TRUE(s->Pop(&e, 30000ms));  // running
  ASSERT_TRUE(s->Pop(&e, 30000ms));  // stats are published after each step
  EXPECT_LT(engine.Stats().pages_free, engine.Stats().pages_total);
  s->Cancel();
  GenerationEvent last;
  Collect(*s, &last);
  EXPECT_EQ(last.finish, FinishReason::kCancelled);
  WaitForFreePages(engine);
  EXPECT_EQ(engine.Stats().cancelled, 1);
}

// --max-context 0 (the default): the model's own limit, held by the cache at least once; a
// prompt that does not fit is refused naming the limit. An explicit limit is kept as given.
TEST_F(EngineTest, DefaultContextIsTheModelsOwnBoundedByTheCache) {
  InferenceEngine engine(*model_, nullptr, {});
  const InferenceEngineOptions& o = engine.options();
  const int64_t model_limit = model_->config().max_position_embeddings;
  EXPECT_LE(o.max_context, model_limit);
  EXPECT_GE(o.max_context, std::min<int64_t>(model_limit, 32768));
  EXPECT_GE(o.cache_pages * o.page_size, o.max_context);
  absl::StatusOr<std::shared_ptr<RequestStream>> refused =
      engine.Submit(Greedy(std::vector<int32_t>(o.max_context, refs_[0].prompt[0]), 1));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(refused.status().message().find(absl::StrCat(o.max_context)), std::string::npos)
      << refused.status();
  InferenceEngine fixed(*model_, nullptr, {.max_context = 100});
  EXPECT_EQ(fixed.options().max_context, 100);
}

TEST_F(EngineTest, DeadlineEndsTheRequest) {
  InferenceEngine engine(*model_, nullptr, {.max_context = 4096});
  GenerationRequest r = Greedy(refs_[0].prompt, 4000);
  r.deadline = SteadyClock::now() + 100ms;
  auto s = *engine.Submit(r);
  GenerationEvent last;
  Collect(*s, &last);
  EXPECT_EQ(last.error.code(), absl::StatusCode::kDeadlineExceeded);
  WaitForFreePages(engine);
  EXPECT_EQ(engine.Stats().expired, 1);
  EXPECT_EQ(engine.Stats().finished, 0);
}

TEST_F(EngineTest, FullQueueIsRefusedAtOnce) {
  InferenceEngine engine(*model_, nullptr,
                         {.max_running = 1, .queue_capacity = 2, .max_context = 4096});
  std::vector<std::shared_ptr<RequestStream>> accepted;
  absl::Status refused;
  for (int i = 0; i < 10 && refused.ok(); ++i) {
    auto s = engine.Submit(Greedy(refs_[0].prompt, 2000));
    if (s.ok()) {
      accepted.push_back(*s);
    } else {
      refused = s.status();
    }
  }
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(refused.message(), HasSubstr("queue is full"));
  for (auto& s : accepted) s->Cancel();
  WaitForFreePages(engine);
}

TEST_F(EngineTest, InvalidRequestsNameTheField) {
  InferenceEngine engine(*model_, nullptr, {.max_context = 32, .max_new_tokens_limit = 100});
  auto expect = [&](GenerationRequest r, const char* field) {
    auto s = engine.Submit(r);
    ASSERT_FALSE(s.ok()) << field;
    EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument) << field;
    EXPECT_THAT(s.status().message(), HasSubstr(field));
  };
  expect(Greedy({}, 4), "prompt");
  expect(Greedy(std::vector<int32_t>(40, 5), 4), "context limit");
  expect(Greedy({1, 99999}, 4), "token_ids.ids[1]");
  expect(Greedy({1, 2}, -1), "stopping.max_new_tokens");
  expect(Greedy({1, 2}, 101), "stopping.max_new_tokens");
  GenerationRequest r = Greedy({1, 2}, 4);
  r.sampling.temperature = -1;
  expect(r, "sampling.temperature");
  r = Greedy({1, 2}, 4);
  r.sampling.top_p = 0;
  expect(r, "sampling.top_p");
  r = Greedy({1, 2}, 4);
  r.sampling.top_k = -3;
  expect(r, "sampling.top_k");
  r = Greedy({1, 2}, 4);
  r.top_logprobs = 21;
  expect(r, "logprobs.top_logprobs");
  r = Greedy({1, 2}, 4);
  r.stop_token_ids = {1 << 20};
  expect(r, "stopping.stop_token_ids[0]");
}

TEST_F(EngineTest, SeededSamplingIsReproducible) {
  InferenceEngine engine(*model_, nullptr, {.max_context = 256});
  auto run = [&](uint64_t seed) {
    GenerationRequest r = Greedy(refs_[1].prompt, 24);
    r.sampling = {.temperature = 1.5f, .top_k = 50, .top_p = 0.95f, .seed = seed};
    return Collect(**engine.Submit(r));
  };
  const std::vector<int32_t> a = run(7), b = run(7), c = run(8);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
}

TEST_F(EngineTest, StopTokenAndLogprobs) {
  InferenceEngine engine(*model_, nullptr, {.max_context = 256});
  GenerationRequest r = Greedy(refs_[2].prompt, 20);
  r.stop_token_ids = {refs_[2].greedy[5]};
  r.logprobs = true;
  r.top_logprobs = 3;
  r.prompt_logprobs = true;
  auto s = *engine.Submit(r);
  GenerationEvent e;
  std::vector<GenerationEvent> events;
  do {
    ASSERT_TRUE(s->Pop(&e, 30000ms));
    events.push_back(e);
  } while (!e.final);
  // Stops at the first occurrence of the stop token (it may appear before index 5).
  const auto& g = refs_[2].greedy;
  const size_t stop_at = std::find(g.begin(), g.end(), g[5]) - g.begin();
  EXPECT_EQ(events.size(), stop_at + 1);
  EXPECT_EQ(events.back().finish, FinishReason::kStop);
  EXPECT_EQ(events.front().prompt_logprobs.size(), refs_[2].prompt.size() - 1);
  for (const GenerationEvent& ev : events) {
    ASSERT_EQ(ev.logprobs.size(), 1u);
    EXPECT_EQ(ev.logprobs[0].top.size(), 3u);
    EXPECT_EQ(ev.logprobs[0].top[0].id, ev.tokens[0]);  // greedy: the chosen is the most likely
    EXPECT_LE(ev.logprobs[0].chosen.logprob, 0.0f);
  }
}

}  // namespace
}  // namespace dsv2
