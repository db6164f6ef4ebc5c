// The standalone server over loopback gRPC: concurrent streams equal sequential runs and the
// golden reference, cancellation and deadlines free the cache, a full queue answers
// RESOURCE_EXHAUSTED, bad requests INVALID_ARGUMENT naming the field, stop strings spanning
// tokens are never emitted, seeded sampling repeats, and health says SERVING. DrainTest: the
// graceful shutdown (health first, new requests refused, running streams finish or time out).
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/safetensors.h"
#include "coordinator/server/coordinator_server.h"
#include "coordinator/server/demo_model.h"
#include "dsv2/v1/inference.grpc.pb.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "tests/test_data_dir.h"

namespace dsv2 {
namespace {

using ::testing::HasSubstr;
using namespace std::chrono_literals;

struct StreamResult {
  grpc::Status status;
  std::vector<int32_t> tokens;
  std::vector<std::string> deltas;
  v1::GenerateResponse last;
};

class Client {
 public:
  explicit Client(int port)
      : channel_(grpc::CreateChannel(absl::StrCat("127.0.0.1:", port),
                                     grpc::InsecureChannelCredentials())),
        stub_(v1::Inference::NewStub(channel_)) {}

  StreamResult Generate(const v1::GenerateRequest& req,
                        std::chrono::milliseconds timeout = 60000ms) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + timeout);
    StreamResult r;
    auto reader = stub_->Generate(&ctx, req);
    v1::GenerateResponse resp;
    while (reader->Read(&resp)) {
      r.tokens.insert(r.tokens.end(), resp.token_ids().begin(), resp.token_ids().end());
      r.deltas.push_back(resp.text());
      r.last = resp;
    }
    r.status = reader->Finish();
    return r;
  }

  v1::ModelInfo Info() {
    grpc::ClientContext ctx;
    v1::ModelInfo info;
    EXPECT_TRUE(stub_->GetModelInfo(&ctx, {}, &info).ok());
    return info;
  }

  // Waits until the server runs nothing and every cache page is free again.
  bool WaitIdle() {
    for (int i = 0; i < 500; ++i) {
      const v1::SchedulerStats s = Info().stats();
      if (s.running_sequences() == 0 && s.waiting_requests() == 0 &&
          s.cache_pages_free() == s.cache_pages_total()) {
        return true;
      }
      std::this_thread::sleep_for(10ms);
    }
    return false;
  }

  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Inference::Stub> stub_;
};

v1::GenerateRequest GreedyIds(const std::vector<int32_t>& ids, int max_new) {
  v1::GenerateRequest r;
  for (int32_t id : ids) r.mutable_token_ids()->add_ids(id);
  r.mutable_sampling()->set_temperature(0.0f);
  r.mutable_stopping()->set_max_new_tokens(max_new);
  r.mutable_stopping()->set_ignore_eos(true);
  return r;
}

v1::GenerateRequest GreedyText(const std::string& text, int max_new) {
  v1::GenerateRequest r;
  r.set_text(text);
  r.mutable_sampling()->set_temperature(0.0f);
  r.mutable_stopping()->set_max_new_tokens(max_new);
  r.mutable_stopping()->set_ignore_eos(true);
  return r;
}

// Built twice: on the CPU here, and as tests/gpu's server_cuda_test (DSV2_SERVER_ON_CUDA) with
// the models on the GPU in float32, skipped without a CUDA device.
#ifdef DSV2_SERVER_ON_CUDA
constexpr ModelPlacement kPlacement{.device = Device::kCuda, .dtype = DType::kF32};
#else
constexpr ModelPlacement kPlacement{.device = Device::kCpu, .dtype = DType::kF32};
#endif

// One server on the golden lite fixture (token ids), one on the demo checkpoint (text).
class ServerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (kPlacement.device == Device::kCuda) {
      const absl::StatusOr<CudaDeviceInfo> gpu = ProbeCudaDevice(0);
      if (!gpu.ok()) {
        skip_reason_ = std::string(gpu.status().message());
        return;
      }
    }
    const std::string lite = TestDataDir() + "/golden/lite";
    // The demo checkpoint is looked up first: where it is missing (a GPU machine running the
    // packed tests outside the build tree without DSV2_DEMO_MODEL) every test fails saying so.
    const absl::StatusOr<std::string> demo_dir = FindDemoModel();
    if (!demo_dir.ok()) {
      setup_error_ = std::string(demo_dir.status().message());
      return;
    }
    absl::StatusOr<std::unique_ptr<CoordinatorServer>> golden =
        CoordinatorServer::Start({.model_dir = lite,
                                  .placement = kPlacement,
                                  .engine = {.max_step_tokens = 32,
                                             .max_running = 48,
                                             .queue_capacity = 64,
                                             .page_size = 8,
                                             .max_context = 4096,
                                             .max_new_tokens_limit = 4000},
                                  .expert_parallel = {}});
    if (!golden.ok()) {
      setup_error_ = "the golden lite server did not start: " + golden.status().ToString();
      return;
    }
    golden_ = golden->release();
    auto ref = SafetensorsFile::Open(lite + "/reference.safetensors");
    for (int i = 0; i < 3; ++i) {
      std::vector<int32_t> ids, greedy;
      for (auto [name, out] : {std::pair{"ids", &ids}, std::pair{"greedy_ids", &greedy}}) {
        const TensorInfo& t = (*ref)->tensors().at(absl::StrCat("prompt.", i, ".", name));
        for (int64_t j = 0; j < t.numel(); ++j)
          out->push_back(static_cast<const int64_t*>(t.data)[j]);
      }
      prompts_.push_back(ids);
      greedy_.push_back(greedy);
    }
    absl::StatusOr<std::unique_ptr<CoordinatorServer>> demo = CoordinatorServer::Start(
        {.model_dir = *demo_dir,
         .demo = true,
         .placement = kPlacement,
         .engine = {.max_running = 1, .queue_capacity = 1, .max_context = 512},
         .expert_parallel = {}});
    if (!demo.ok()) {
      setup_error_ = "the demo server did not start: " + demo.status().ToString();
      return;
    }
    demo_ = demo->release();
  }
  static void TearDownTestSuite() {
    delete golden_;
    delete demo_;
  }
  void SetUp() override {
    ASSERT_TRUE(setup_error_.empty()) << setup_error_;
    if (golden_ == nullptr) GTEST_SKIP() << skip_reason_;
  }

  static CoordinatorServer* golden_;
  static CoordinatorServer* demo_;
  static std::vector<std::vector<int32_t>> prompts_, greedy_;
  static std::string skip_reason_;
  static std::string setup_error_;
};

CoordinatorServer* ServerTest::golden_ = nullptr;
CoordinatorServer* ServerTest::demo_ = nullptr;
std::vector<std::vector<int32_t>> ServerTest::prompts_, ServerTest::greedy_;
std::string ServerTest::skip_reason_;
std::string ServerTest::setup_error_;

TEST_F(ServerTest, ConcurrentStreamsEqualSequentialAndGolden) {
  Client client(golden_->port());
  constexpr int kStreams = 32;
  std::vector<v1::GenerateRequest> reqs;
  for (int i = 0; i < kStreams; ++i) {
    // Mixed lengths: prompts cut at different points, different numbers of new tokens.
    const std::vector<int32_t>& p = prompts_[i % 3];
    reqs.push_back(GreedyIds(p, 3 + (i * 5) % 18));
  }
  std::vector<StreamResult> concurrent(kStreams);
  std::vector<std::thread> threads;
  for (int i = 0; i < kStreams; ++i) {
    threads.emplace_back([&, i] { concurrent[i] = client.Generate(reqs[i]); });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < kStreams; ++i) {
    ASSERT_TRUE(concurrent[i].status.ok()) << concurrent[i].status.error_message();
    const StreamResult alone = client.Generate(reqs[i]);
    ASSERT_TRUE(alone.status.ok());
    EXPECT_EQ(concurrent[i].tokens, alone.tokens) << "stream " << i;
    const std::vector<int32_t>& g = greedy_[i % 3];
    EXPECT_EQ(concurrent[i].tokens,
              std::vector<int32_t>(g.begin(), g.begin() + concurrent[i].tokens.size()));
    EXPECT_EQ(concurrent[i].last.finish_reason(), v1::FINISH_REASON_LENGTH);
    EXPECT_EQ(concurrent[i].last.usage().completion_tokens(), 3 + (i * 5) % 18);
    EXPECT_EQ(concurrent[i].last.usage().prompt_tokens(), static_cast<int>(prompts_[i % 3].size()));
  }
  EXPECT_TRUE(client.WaitIdle());
}

TEST_F(ServerTest, CancelMidStreamReturnsThePages) {
  Client client(golden_->port());
  const int64_t cancelled_before = client.Info().stats().requests_cancelled();
  grpc::ClientContext ctx;
  auto reader = client.stub_->Generate(&ctx, GreedyIds(prompts_[0], 4000));
  v1::GenerateResponse resp;
  ASSERT_TRUE(reader->Read(&resp));
  ASSERT_TRUE(reader->Read(&resp));
  EXPECT_LT(client.Info().stats().cache_pages_free(), client.Info().stats().cache_pages_total());
  ctx.TryCancel();
  while (reader->Read(&resp)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_TRUE(client.WaitIdle());
  EXPECT_EQ(client.Info().stats().requests_cancelled(), cancelled_before + 1);
}

TEST_F(ServerTest, DeadlineExceeded) {
  Client client(golden_->port());
  const StreamResult r = client.Generate(GreedyIds(prompts_[1], 4000), 30ms);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << r.status.error_message();
  EXPECT_TRUE(client.WaitIdle());
}

TEST_F(ServerTest, FullQueueIsResourceExhausted) {
  // The demo server runs one sequence and queues one more.
  Client client(demo_->port());
  grpc::ClientContext running_ctx, queued_ctx;
  auto running = client.stub_->Generate(&running_ctx, GreedyText("long one", 400));
  v1::GenerateResponse resp;
  ASSERT_TRUE(running->Read(&resp));  // admitted and running
  auto queued = client.stub_->Generate(&queued_ctx, GreedyText("queued", 4));
  for (int i = 0; i < 500 && client.Info().stats().waiting_requests() < 1; ++i) {
    std::this_thread::sleep_for(10ms);
  }
  ASSERT_EQ(client.Info().stats().waiting_requests(), 1);
  const StreamResult refused = client.Generate(GreedyText("refused", 4));
  EXPECT_EQ(refused.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(refused.status.error_message(), HasSubstr("queue is full"));
  running_ctx.TryCancel();
  while (running->Read(&resp)) {
  }
  running->Finish();
  while (queued->Read(&resp)) {
  }
  const grpc::Status queued_status = queued->Finish();
  EXPECT_TRUE(queued_status.ok()) << queued_status.error_code() << " "
                                  << queued_status.error_message();  // still completes
  EXPECT_TRUE(client.WaitIdle());
}

// What a stranger can send: a 64 MB message is refused before it is read into memory, 100k stop
// strings and out-of-range logprobs by name; the server keeps serving afterwards.
TEST_F(ServerTest, HostileRequestsAreRefusedAndTheServerKeepsServing) {
  Client client(demo_->port());
  StreamResult r = client.Generate(GreedyText(std::string(64 << 20, 'a'), 4));
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << r.status.error_message();
  v1::GenerateRequest many = GreedyText("hi", 4);
  const std::vector<std::string> stops(100000, std::string(1, 'a'));
  many.mutable_stopping()->mutable_stop()->Assign(stops.begin(), stops.end());
  r = client.Generate(many);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(r.status.error_message(), HasSubstr("stopping.stop has 100000 strings, at most 16"));
  v1::GenerateRequest lp = GreedyText("hi", 4);
  lp.mutable_logprobs()->set_top_logprobs(1 << 30);
  r = client.Generate(lp);
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(r.status.error_message(), HasSubstr("logprobs.top_logprobs"));
  r = client.Generate(GreedyText("ROMEO.", 4));
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.tokens.size(), 4u);
}

TEST_F(ServerTest, InvalidArgumentsNameTheField) {
  Client client(demo_->port());
  const int64_t vocab = demo_->model().config().vocab_size;
  struct Case {
    std::string name;
    v1::GenerateRequest req;
    std::string field;
  };
  std::vector<Case> cases;
  cases.push_back({"no prompt", v1::GenerateRequest(), "prompt"});
  cases.push_back({"empty text", GreedyText("", 4), "text"});
  cases.push_back({"empty ids", GreedyIds({}, 4), "token_ids"});
  cases.push_back({"too long", GreedyIds(std::vector<int32_t>(600, 7), 4), "context limit"});
  cases.push_back({"max_new 0", GreedyText("hi", 0), "stopping.max_new_tokens"});
  cases.push_back({"max_new big", GreedyText("hi", 100000), "stopping.max_new_tokens"});
  cases.push_back({"bad id", GreedyIds({1, static_cast<int32_t>(vocab)}, 4), "token_ids.ids[1]"});
  Case c{"temperature", GreedyText("hi", 4), "sampling.temperature"};
  c.req.mutable_sampling()->set_temperature(-0.5f);
  cases.push_back(c);
  c = {"top_p 0", GreedyText("hi", 4), "sampling.top_p"};
  c.req.mutable_sampling()->set_top_p(0.0f);
  cases.push_back(c);
  c = {"top_p big", GreedyText("hi", 4), "sampling.top_p"};
  c.req.mutable_sampling()->set_top_p(1.5f);
  cases.push_back(c);
  c = {"top_k", GreedyText("hi", 4), "sampling.top_k"};
  c.req.mutable_sampling()->set_top_k(-1);
  cases.push_back(c);
  c = {"logprobs", GreedyText("hi", 4), "logprobs.top_logprobs"};
  c.req.mutable_logprobs()->set_top_logprobs(21);
  cases.push_back(c);
  c = {"negative logprobs", GreedyText("hi", 4), "logprobs.top_logprobs"};  // found by fuzzing
  c.req.mutable_logprobs()->set_top_logprobs(-3);
  cases.push_back(c);
  c = {"chat role", v1::GenerateRequest(), "wizard"};
  auto* m = c.req.mutable_chat()->add_messages();
  m->set_role("wizard");
  m->set_content("hi");
  cases.push_back(c);
  // proto3 refuses invalid UTF-8 in string fields while parsing; the C++ client still sends it.
  cases.push_back({"invalid utf-8", GreedyText("ab\xff\xfe", 4), "valid UTF-8"});
  c = {"invalid utf-8 stop", GreedyText("hi", 4), "stopping.stop"};
  c.req.mutable_stopping()->add_stop(std::string(1, static_cast<char>(0xc3)));
  cases.push_back(c);
  for (const Case& k : cases) {
    const StreamResult r = client.Generate(k.req);
    EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << k.name;
    EXPECT_THAT(r.status.error_message(), HasSubstr(k.field)) << k.name;
  }
  EXPECT_TRUE(client.WaitIdle());  // nothing leaked, the server is still up
  EXPECT_TRUE(client.Generate(GreedyText("still fine", 2)).status.ok());
}

TEST_F(ServerTest, StopStringAcrossTokensIsNeverEmitted) {
  Client client(demo_->port());
  const StreamResult full = client.Generate(GreedyText("The quick brown fox", 40));
  ASSERT_TRUE(full.status.ok());
  // A stop string made of the last character of one token's text and the first of the next.
  auto ascii = [](char ch) { return static_cast<unsigned char>(ch) < 0x80; };
  std::string stop;
  for (size_t i = 0; i + 1 < full.deltas.size() && stop.empty(); ++i) {
    const std::string& a = full.deltas[i];
    const std::string& b = full.deltas[i + 1];
    if (!a.empty() && !b.empty() && ascii(a.back()) && ascii(b.front())) {
      stop = std::string(1, a.back()) + b.front();
    }
  }
  ASSERT_FALSE(stop.empty()) << "no two ASCII-ended deltas in the demo output";
  std::string all;
  for (const std::string& d : full.deltas) all += d;
  const std::string expected = all.substr(0, all.find(stop));  // the first occurrence wins
  v1::GenerateRequest req = GreedyText("The quick brown fox", 40);
  req.mutable_stopping()->add_stop(stop);
  const StreamResult r = client.Generate(req);
  ASSERT_TRUE(r.status.ok());
  std::string got;
  for (const std::string& d : r.deltas) got += d;
  EXPECT_EQ(got, expected);
  EXPECT_EQ(got.find(stop), std::string::npos);
  EXPECT_EQ(r.last.finish_reason(), v1::FINISH_REASON_STOP);
}

TEST_F(ServerTest, SeededSamplingIsReproducible) {
  Client client(demo_->port());
  auto run = [&](uint64_t seed) {
    v1::GenerateRequest req = GreedyText("Once upon a time", 24);
    req.mutable_sampling()->set_temperature(1.0f);
    req.mutable_sampling()->set_top_p(0.9f);
    req.mutable_sampling()->set_seed(seed);
    StreamResult r = client.Generate(req);
    EXPECT_TRUE(r.status.ok());
    return r.tokens;
  };
  EXPECT_EQ(run(42), run(42));
  EXPECT_NE(run(42), run(43));
}

// Prefix caching through the API: a repeated prompt reports its cached tokens in the usage and
// gives the same tokens; another cache_salt never hits; GetModelInfo counts queries and hits.
TEST_F(ServerTest, RepeatedPromptIsServedFromThePrefixCacheWithinItsSalt) {
  Client client(golden_->port());
  std::vector<int32_t> prompt;
  for (int i = 0; i < 41; ++i) prompt.push_back(3 + (i * 37) % 500);  // 5 pages of 8 + 1
  auto run = [&](const std::string& salt) {
    v1::GenerateRequest req = GreedyIds(prompt, 6);
    req.set_cache_salt(salt);
    StreamResult r = client.Generate(req);
    EXPECT_TRUE(r.status.ok()) << r.status.error_message();
    return r;
  };
  const v1::SchedulerStats before = client.Info().stats();
  EXPECT_TRUE(before.prefix_caching());
  const StreamResult first = run("server-test");
  EXPECT_EQ(first.last.usage().cached_prompt_tokens(), 0);
  const StreamResult again = run("server-test");
  EXPECT_EQ(again.last.usage().cached_prompt_tokens(), 40);
  EXPECT_EQ(again.last.usage().prompt_tokens(), 41);
  EXPECT_EQ(again.tokens, first.tokens);
  EXPECT_EQ(run("server-test-other-tenant").last.usage().cached_prompt_tokens(), 0);
  const v1::SchedulerStats after = client.Info().stats();
  EXPECT_EQ(after.prefix_cache_queries() - before.prefix_cache_queries(), 3 * 41);
  EXPECT_EQ(after.prefix_cache_hits() - before.prefix_cache_hits(), 40);
  EXPECT_GT(after.cache_pages_cached(), 0);
  v1::GenerateRequest long_salt = GreedyIds(prompt, 1);
  long_salt.set_cache_salt(std::string(300, 's'));
  const StreamResult refused = client.Generate(long_salt);
  EXPECT_EQ(refused.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(refused.status.error_message().find("cache_salt"), std::string::npos);
}

TEST_F(ServerTest, HealthIsServing) {
  Client client(demo_->port());
  auto health = grpc::health::v1::Health::NewStub(client.channel_);
  grpc::ClientContext ctx;
  grpc::health::v1::HealthCheckResponse resp;
  ASSERT_TRUE(health->Check(&ctx, {}, &resp).ok());
  EXPECT_EQ(resp.status(), grpc::health::v1::HealthCheckResponse::SERVING);
}

// Empty text tokenizes as Hugging Face's tokenizers do: BOS alone with special tokens, else no
// ids; a Generate with empty text is still refused.
TEST_F(ServerTest, TokenizeEmptyTextLikeHuggingFace) {
  Client client(demo_->port());
  v1::TokenizeRequest req;
  req.set_text("");
  v1::TokenizeResponse with_bos, bare;
  {
    grpc::ClientContext ctx;
    ASSERT_TRUE(client.stub_->Tokenize(&ctx, req, &with_bos).ok());
  }
  req.set_add_special_tokens(false);
  {
    grpc::ClientContext ctx;
    ASSERT_TRUE(client.stub_->Tokenize(&ctx, req, &bare).ok());
  }
  ASSERT_EQ(with_bos.ids_size(), 1);
  EXPECT_EQ(with_bos.tokens(0), "<｜begin▁of▁sentence｜>");
  EXPECT_EQ(bare.ids_size(), 0);
  const StreamResult r = client.Generate(GreedyText("", 4));
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(r.status.error_message(), HasSubstr("text"));
}

// Graceful shutdown (SIGTERM in dsv2-coordinator): each server here is its own, drained.
class DrainTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (kPlacement.device == Device::kCuda && !ProbeCudaDevice(0).ok()) {
      GTEST_SKIP() << ProbeCudaDevice(0).status().message();
    }
    auto server =
        CoordinatorServer::Start({.model_dir = TestDataDir() + "/golden/lite",
                                  .placement = kPlacement,
                                  .engine = {.max_context = 4096, .max_new_tokens_limit = 4000},
                                  .expert_parallel = {}});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
  }
  grpc::health::v1::HealthCheckResponse::ServingStatus Health(Client& client) {
    auto health = grpc::health::v1::Health::NewStub(client.channel_);
    grpc::ClientContext ctx;
    grpc::health::v1::HealthCheckResponse resp;
    EXPECT_TRUE(health->Check(&ctx, {}, &resp).ok());
    return resp.status();
  }
  std::unique_ptr<CoordinatorServer> server_;
};

TEST_F(DrainTest, RunningStreamsFinishNewRequestsAreRefusedHealthTurnsAtOnce) {
  Client client(server_->port());
  ASSERT_EQ(Health(client), grpc::health::v1::HealthCheckResponse::SERVING);
  StreamResult running;
  std::thread stream([&] { running = client.Generate(GreedyIds({1, 2, 3}, 300)); });
  while (client.Info().stats().running_sequences() == 0) std::this_thread::sleep_for(1ms);
  int64_t cut = -1;
  std::thread drain([&] { cut = server_->Drain(std::chrono::seconds(60)); });
  // Health turns first, then new requests are refused while the running stream goes on.
  for (int i = 0; i < 500 && Health(client) == grpc::health::v1::HealthCheckResponse::SERVING;
       ++i) {
    std::this_thread::sleep_for(2ms);
  }
  EXPECT_EQ(Health(client), grpc::health::v1::HealthCheckResponse::NOT_SERVING);
  const StreamResult refused = client.Generate(GreedyIds({4, 5}, 4));
  EXPECT_EQ(refused.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(refused.status.error_message(), HasSubstr("draining"));
  stream.join();
  drain.join();
  EXPECT_TRUE(running.status.ok()) << running.status.error_message();
  EXPECT_EQ(running.tokens.size(), 300u);  // finished in full
  EXPECT_EQ(cut, 0);
}

TEST_F(DrainTest, StreamsBeyondTheTimeoutEndUnavailableSayingWhy) {
  Client client(server_->port());
  StreamResult running;
  std::thread stream([&] { running = client.Generate(GreedyIds({1, 2, 3}, 3900)); });
  while (client.Info().stats().running_sequences() == 0) std::this_thread::sleep_for(1ms);
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(server_->Drain(std::chrono::milliseconds(200)), 1);
  stream.join();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 10s);
  EXPECT_EQ(running.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(running.status.error_message(), HasSubstr("drain timeout"));
  EXPECT_LT(running.tokens.size(), 3900u);
}

}  // namespace
}  // namespace dsv2
