// Prefix caching in the engine: a request whose tokens start like an earlier one's maps the
// cached pages and computes only the rest, and its outputs are those of a run without caching
// (greedy tokens identical, logprobs within 1e-5 in float32) over randomized mixes of shared
// prefixes, repeats and multi-turn continuations, under preemption pressure and with cancels;
// every page is held, cached or free after every step; salts keep requests apart.
#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "coordinator/serving/inference_engine.h"
#include "gtest/gtest.h"
#include "tests/unit/engine_test_fixture.h"

namespace dsv2 {
namespace {

constexpr float kLogprobTolerance = 1e-5f;

struct Outcome {
  std::vector<int32_t> tokens;
  std::vector<TokenLogprobs> logprobs;
  std::vector<TokenLogprobs> prompt_logprobs;
  GenerationEvent last;
};

Outcome Drain(RequestStream& s) {
  Outcome o;
  GenerationEvent e;
  while (s.Pop(&e, std::chrono::seconds(60))) {
    o.tokens.insert(o.tokens.end(), e.tokens.begin(), e.tokens.end());
    for (auto& lp : e.logprobs) o.logprobs.push_back(std::move(lp));
    for (auto& lp : e.prompt_logprobs) o.prompt_logprobs.push_back(std::move(lp));
    if (e.final) {
      o.last = std::move(e);
      return o;
    }
  }
  ADD_FAILURE() << "no event within 60 s";
  return o;
}

void ExpectSameLogprobs(const std::vector<TokenLogprobs>& a, const std::vector<TokenLogprobs>& b,
                        const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].chosen.id, b[i].chosen.id) << what << " #" << i;
    EXPECT_NEAR(a[i].chosen.logprob, b[i].chosen.logprob, kLogprobTolerance) << what << " #" << i;
    ASSERT_EQ(a[i].top.size(), b[i].top.size()) << what << " #" << i;
    for (size_t k = 0; k < a[i].top.size(); ++k) {
      EXPECT_NEAR(a[i].top[k].logprob, b[i].top[k].logprob, kLogprobTolerance)
          << what << " #" << i << " top " << k;
    }
  }
}

class PrefixCachingTest : public EngineTest {
 protected:
  static GenerationRequest Request(const std::vector<int32_t>& prompt, int max_new) {
    GenerationRequest r = Greedy(prompt, max_new);
    r.logprobs = true;
    r.top_logprobs = 3;
    return r;
  }
  static InferenceEngineOptions Options(bool caching) {
    // A small cache of 4-token pages: the mix below preempts and evicts.
    return {.max_step_tokens = 32,
            .max_running = 8,
            .cache_pages = 72,
            .page_size = 4,
            .max_context = 256,
            .prefix_caching = caching,
            .audit_pages = true};
  }
  static void ExpectPagesSound(const InferenceEngine& engine) {
    WaitForFreePages(engine);
    const EngineStats s = engine.Stats();
    EXPECT_EQ(s.page_audit_failures, 0) << s.first_page_audit_failure;
  }
  static std::vector<int32_t> RandomTokens(std::mt19937& rng, int n) {
    std::uniform_int_distribution<int32_t> token(
        3, static_cast<int32_t>(model_->config().vocab_size) - 1);
    std::vector<int32_t> v(n);
    for (int32_t& t : v) t = token(rng);
    return v;
  }
};

// Runs a wave of requests at once; the ones in `cancel` are cancelled right after submission.
std::vector<Outcome> RunWave(InferenceEngine& engine, const std::vector<GenerationRequest>& wave,
                             const std::vector<size_t>& cancel) {
  std::vector<std::shared_ptr<RequestStream>> streams;
  for (const GenerationRequest& r : wave) {
    absl::StatusOr<std::shared_ptr<RequestStream>> s = engine.Submit(r);
    EXPECT_TRUE(s.ok()) << s.status();
    streams.push_back(*s);
  }
  for (size_t i : cancel) streams[i]->Cancel();
  std::vector<Outcome> out;
  for (auto& s : streams) out.push_back(Drain(*s));
  return out;
}

TEST_F(PrefixCachingTest, RandomizedMixesGiveTheOutputsOfARunWithoutCaching) {
  for (const uint32_t seed : {1u, 2u, 3u}) {
    std::mt19937 rng(seed);
    // Shared prefixes of 0 to 150 tokens (not all page-aligned), each followed by suffixes of
    // 1 to 30 tokens; some prompts repeat an earlier one exactly (all of it cached: the last
    // token is recomputed into a copy of the last page).
    std::vector<std::vector<int32_t>> prefixes;
    for (const int len : {0, 37, 64, 150}) prefixes.push_back(RandomTokens(rng, len));
    std::vector<GenerationRequest> wave1;
    std::uniform_int_distribution<int> pick(0, 3), suffix(1, 30), max_new(6, 10);
    for (int i = 0; i < 24; ++i) {
      if (i >= 8 && i % 6 == 0) {
        wave1.push_back(wave1[i / 3]);
        continue;
      }
      std::vector<int32_t> prompt = prefixes[pick(rng)];
      const std::vector<int32_t> tail = RandomTokens(rng, suffix(rng));
      prompt.insert(prompt.end(), tail.begin(), tail.end());
      wave1.push_back(Request(prompt, max_new(rng)));
    }
    const std::vector<size_t> cancel1 = {5, 17};
    std::map<bool, std::vector<Outcome>> first, second;
    std::vector<GenerationRequest> wave2;
    for (const bool caching : {false, true}) {
      InferenceEngine engine(*model_, nullptr, Options(caching));
      first[caching] = RunWave(engine, wave1, cancel1);
      if (!caching) {
        // Multi-turn: the next turn resends a conversation (prompt and answer) with more text.
        for (size_t i = 0; i < 8; ++i) {
          if (i == 5) continue;
          std::vector<int32_t> prompt = wave1[i].prompt;
          prompt.insert(prompt.end(), first[false][i].tokens.begin(), first[false][i].tokens.end());
          const std::vector<int32_t> more = RandomTokens(rng, 3 + static_cast<int>(i));
          prompt.insert(prompt.end(), more.begin(), more.end());
          wave2.push_back(Request(prompt, 8));
        }
      }
      second[caching] = RunWave(engine, wave2, {});
      ExpectPagesSound(engine);
      const EngineStats s = engine.Stats();
      EXPECT_GT(s.preemptions, 0) << "seed " << seed << ": the mix should preempt";
      if (caching) {
        EXPECT_GT(s.prefix_cache_hits, 0) << "seed " << seed;
        EXPECT_GT(s.pages_cached, 0) << "seed " << seed;
      } else {
        EXPECT_EQ(s.prefix_cache_hits, 0);
        EXPECT_EQ(s.pages_cached, 0);
      }
    }
    int64_t cached_tokens = 0;
    for (size_t i = 0; i < wave1.size(); ++i) {
      if (std::find(cancel1.begin(), cancel1.end(), i) != cancel1.end()) continue;
      const std::string what = absl::StrCat("seed ", seed, " request ", i);
      EXPECT_EQ(first[true][i].tokens, first[false][i].tokens) << what;
      ExpectSameLogprobs(first[true][i].logprobs, first[false][i].logprobs, what);
      EXPECT_EQ(first[false][i].last.cached_prompt_tokens, 0) << what;
      cached_tokens += first[true][i].last.cached_prompt_tokens;
    }
    for (size_t i = 0; i < wave2.size(); ++i) {
      const std::string what = absl::StrCat("seed ", seed, " turn 2 of conversation ", i);
      EXPECT_EQ(second[true][i].tokens, second[false][i].tokens) << what;
      ExpectSameLogprobs(second[true][i].logprobs, second[false][i].logprobs, what);
      // The conversation's first turn left its pages (prompt and answer) in the cache, unless
      // the small cache evicted them since.
      cached_tokens += second[true][i].last.cached_prompt_tokens;
    }
    EXPECT_GT(cached_tokens, 0) << "seed " << seed;
  }
}

TEST_F(PrefixCachingTest, ARepeatedPromptComputesOnlyWhatIsNotCached) {
  InferenceEngine engine(*model_, nullptr, Options(true));
  std::mt19937 rng(11);
  const std::vector<int32_t> prompt = RandomTokens(rng, 50);  // 12 full pages + 2 tokens
  const Outcome a = Drain(**engine.Submit(Request(prompt, 8)));
  EXPECT_EQ(a.last.cached_prompt_tokens, 0);
  // The 12 pages, then the first 2 rows of the next (written with the generated tokens after
  // them: a copy). The last prompt token runs again for its logits.
  const Outcome b = Drain(**engine.Submit(Request(prompt, 8)));
  EXPECT_EQ(b.last.cached_prompt_tokens, 49);
  EXPECT_EQ(b.tokens, a.tokens);
  ExpectSameLogprobs(b.logprobs, a.logprobs, "repeat");
  // A page-aligned prompt, all of it cached: the last token runs again (copy on write).
  const std::vector<int32_t> aligned(prompt.begin(), prompt.begin() + 48);
  const Outcome c = Drain(**engine.Submit(Request(aligned, 8)));
  EXPECT_EQ(c.last.cached_prompt_tokens, 47);
  const Outcome c2 = Drain(**engine.Submit(Request(aligned, 8)));
  EXPECT_EQ(c2.last.cached_prompt_tokens, 47);
  EXPECT_EQ(c.tokens, c2.tokens);
  ExpectSameLogprobs(c.logprobs, c2.logprobs, "aligned repeat");
  InferenceEngine uncached(*model_, nullptr, Options(false));
  const Outcome c_ref = Drain(**uncached.Submit(Request(aligned, 8)));
  EXPECT_EQ(c.tokens, c_ref.tokens);
  ExpectSameLogprobs(c.logprobs, c_ref.logprobs, "aligned, against no caching");
  const Outcome d = Drain(**uncached.Submit(Request(prompt, 8)));
  EXPECT_EQ(d.last.cached_prompt_tokens, 0);
  EXPECT_EQ(uncached.Stats().prefix_cache_hits, 0);
  const EngineStats s = engine.Stats();
  EXPECT_EQ(s.prefix_cache_hits, 49 + 47 + 47);
  EXPECT_EQ(s.prefix_cache_queries, 50 + 50 + 48 + 48);
  ExpectPagesSound(engine);
}

// Requests that arrive together with one system prompt: the first computes it, the others wait
// the few steps until its pages are cached instead of computing it again.
TEST_F(PrefixCachingTest, ConcurrentRequestsWithOnePrefixComputeItOnce) {
  std::mt19937 rng(14);
  const std::vector<int32_t> system = RandomTokens(rng, 48);
  std::vector<GenerationRequest> wave;
  for (int i = 0; i < 4; ++i) {
    std::vector<int32_t> prompt = system;
    for (const int32_t t : RandomTokens(rng, 2)) prompt.push_back(t);
    wave.push_back(Request(prompt, 6));
  }
  std::map<bool, std::vector<Outcome>> out;
  for (const bool caching : {false, true}) {
    InferenceEngine engine(*model_, nullptr, Options(caching));
    out[caching] = RunWave(engine, wave, {});
    ExpectPagesSound(engine);
  }
  EXPECT_EQ(out[true][0].last.cached_prompt_tokens, 0);
  for (size_t i = 0; i < wave.size(); ++i) {
    if (i > 0) {
      EXPECT_EQ(out[true][i].last.cached_prompt_tokens, 48) << i;
    }
    EXPECT_EQ(out[true][i].tokens, out[false][i].tokens) << i;
    ExpectSameLogprobs(out[true][i].logprobs, out[false][i].logprobs, absl::StrCat("request ", i));
  }
}

TEST_F(PrefixCachingTest, ASaltedRequestNeverHitsAnotherSaltsPages) {
  InferenceEngine engine(*model_, nullptr, Options(true));
  std::mt19937 rng(12);
  const std::vector<int32_t> prompt = RandomTokens(rng, 40);
  auto cached = [&](const std::string& salt) {
    GenerationRequest r = Request(prompt, 4);
    r.cache_salt = salt;
    return Drain(**engine.Submit(r)).last.cached_prompt_tokens;
  };
  EXPECT_EQ(cached("tenant-a"), 0);
  EXPECT_EQ(cached("tenant-b"), 0);
  EXPECT_EQ(cached(""), 0);
  EXPECT_EQ(cached("tenant-a"), 39);
  EXPECT_EQ(cached("tenant-b"), 39);
  EXPECT_EQ(cached(""), 39);
  EXPECT_EQ(cached("tenant-c"), 0);
  GenerationRequest too_long = Request(prompt, 4);
  too_long.cache_salt.assign(257, 'x');
  absl::StatusOr<std::shared_ptr<RequestStream>> refused = engine.Submit(too_long);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(refused.status().message().find("cache_salt"), std::string::npos);
  ExpectPagesSound(engine);
}

TEST_F(PrefixCachingTest, PromptLogprobsComputeTheWholePromptAndCacheItForOthers) {
  InferenceEngine engine(*model_, nullptr, Options(true));
  InferenceEngine uncached(*model_, nullptr, Options(false));
  std::mt19937 rng(13);
  const std::vector<int32_t> prompt = RandomTokens(rng, 30);
  Drain(**engine.Submit(Request(prompt, 4)));
  GenerationRequest with_prompt_logprobs = Request(prompt, 4);
  with_prompt_logprobs.prompt_logprobs = true;
  const Outcome a = Drain(**engine.Submit(with_prompt_logprobs));
  const Outcome ref = Drain(**uncached.Submit(with_prompt_logprobs));
  EXPECT_EQ(a.last.cached_prompt_tokens, 0);  // every prompt position's logits were needed
  ASSERT_EQ(a.prompt_logprobs.size(), prompt.size() - 1);
  ExpectSameLogprobs(a.prompt_logprobs, ref.prompt_logprobs, "prompt logprobs");
  EXPECT_EQ(a.tokens, ref.tokens);
  // 7 full pages and the first 2 rows of the 8th (which the answer's tokens completed).
  EXPECT_EQ(Drain(**engine.Submit(Request(prompt, 4))).last.cached_prompt_tokens, 29);
  ExpectPagesSound(engine);
}

}  // namespace
}  // namespace dsv2
