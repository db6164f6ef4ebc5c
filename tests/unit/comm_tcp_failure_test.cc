// The TCP communicator when peers misbehave: killed, silent, dying mid-message, refusing the
// handshake, unreachable. Every case must end in a clear status within its timeout, never a hang.
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/cluster_auth.h"
#include "common/comm/tcp/asio_util.h"
#include "common/comm/tcp/frame.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/comm_tcp_harness.h"

namespace dsv2 {
namespace {

namespace asio = boost::asio;
using comm_tcp::tcp;
using comm_testing::Reply;
using comm_testing::TcpCluster;
using ::testing::AllOf;
using ::testing::HasSubstr;

struct Batch {
  std::vector<float> x;
  comm_testing::Routing routing;
  DispatchLayout layout;
};
Batch MakeBatch(const ExpertPlacement& p, int64_t n, int64_t k, int64_t hidden, int seed = 1) {
  std::mt19937 rng(seed);
  comm_testing::Routing routing = comm_testing::RandomRouting(rng, n, k, p.n_experts());
  DispatchLayout layout =
      *DispatchLayout::Compute(p, routing.expert.data(), routing.weight.data(), n, k);
  return {comm_testing::EncodedActivations(n, hidden), std::move(routing), std::move(layout)};
}

// A hand-written worker that speaks the wire format, to misbehave where the real link cannot.
class FakeWorker {
 public:
  FakeWorker() : acceptor_(io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)) {}
  std::string endpoint() const {
    return absl::StrCat("127.0.0.1:", acceptor_.local_endpoint().port());
  }
  // Accepts the coordinator and acknowledges its hello.
  void Accept() {
    acceptor_.accept(socket_);
    std::vector<uint8_t> hello;
    const comm_tcp::FrameHeader h = ReadFrame(&hello);
    ASSERT_EQ(h.type, comm_tcp::FrameType::kHello);
    Write(comm_tcp::EncodeHeader(
        {.type = comm_tcp::FrameType::kHelloAck, .payload_bytes = comm_tcp::kHelloPayloadBytes}));
    Write(hello);
  }
  comm_tcp::FrameHeader ReadFrame(std::vector<uint8_t>* payload) {
    comm_tcp::HeaderBytes bytes{};
    asio::read(socket_, asio::buffer(bytes), ec_);
    const comm_tcp::FrameHeader h = *comm_tcp::DecodeHeader(bytes, int64_t{1} << 32);
    payload->resize(h.payload_bytes);
    asio::read(socket_, asio::buffer(*payload), ec_);
    return h;
  }
  template <typename Bytes>
  void Write(const Bytes& bytes) {
    asio::write(socket_, asio::buffer(bytes), ec_);
  }
  void Close() { socket_.close(ec_); }

 private:
  asio::io_context io_;
  tcp::acceptor acceptor_;
  tcp::socket socket_{io_};
  comm_tcp::ErrorCode ec_;
};

TEST(CommTcpFailureTest, KilledWorkerMidLayerIsUnavailableNamingItsRank) {
  comm_testing::WorkerScript script;
  script.reply = [](int rank, int layer) {
    return rank == 2 && layer == 1 ? Reply::kClose : Reply::kAnswer;
  };
  TcpDispatcherOptions options = comm_testing::FastDispatcherOptions();
  options.timeout = absl::Seconds(5);
  TcpCluster cluster(3, script, comm_testing::FastWorkerOptions(), options);
  DSV2_ASSERT_OK(cluster.Start());
  const ExpertPlacement p = *ExpertPlacement::Contiguous(8, 3, false);
  Batch b = MakeBatch(p, 40, 3, 16);
  std::vector<float> out(40 * 16, 0.0f);
  DSV2_ASSERT_OK(cluster.dispatcher().Dispatch(0, b.layout, b.x.data(), 16));
  DSV2_ASSERT_OK(cluster.dispatcher().Combine(0, b.layout, out.data(), 16));

  DSV2_ASSERT_OK(cluster.dispatcher().Dispatch(1, b.layout, b.x.data(), 16));
  const absl::Time start = absl::Now();
  const absl::Status s = cluster.dispatcher().Combine(1, b.layout, out.data(), 16);
  EXPECT_LT(absl::Now() - start, options.timeout);  // the closed socket is noticed at once
  EXPECT_TRUE(absl::IsUnavailable(s)) << s;
  EXPECT_THAT(s.message(), AllOf(HasSubstr("expert-parallel rank 2"), HasSubstr("layer 1")));
  EXPECT_THAT(s.message(), ::testing::Not(HasSubstr("rank 1 ")));
  // Broken for good: the next call fails at once with the same status.
  EXPECT_EQ(cluster.dispatcher().Dispatch(2, b.layout, b.x.data(), 16), s);
  const auto& workers = cluster.Join();
  EXPECT_TRUE(absl::IsUnavailable(workers[0].end)) << workers[0].end;
  EXPECT_THAT(workers[0].end.message(), HasSubstr("rank 0"));
}

TEST(CommTcpFailureTest, SilentWorkerIsUnavailableAfterTheTimeout) {
  comm_testing::WorkerScript script;
  script.reply = [](int rank, int) { return rank == 1 ? Reply::kSilent : Reply::kAnswer; };
  TcpDispatcherOptions options = comm_testing::FastDispatcherOptions();
  options.timeout = absl::Milliseconds(300);
  TcpCluster cluster(4, script, comm_testing::FastWorkerOptions(), options);
  DSV2_ASSERT_OK(cluster.Start());
  const ExpertPlacement p = *ExpertPlacement::Contiguous(9, 4, false);
  Batch b = MakeBatch(p, 30, 2, 8);
  std::vector<float> out(30 * 8, 0.0f);
  DSV2_ASSERT_OK(cluster.dispatcher().Dispatch(0, b.layout, b.x.data(), 8));
  const absl::Time start = absl::Now();
  const absl::Status s = cluster.dispatcher().Combine(0, b.layout, out.data(), 8);
  const absl::Duration took = absl::Now() - start;
  EXPECT_TRUE(absl::IsUnavailable(s)) << s;
  EXPECT_THAT(s.message(), AllOf(HasSubstr("expert-parallel rank 1 "),
                                 HasSubstr("no combine of layer 0 within 300 ms")));
  EXPECT_THAT(s.message(), ::testing::Not(HasSubstr("rank 2")));
  EXPECT_GE(took, absl::Milliseconds(290));
  EXPECT_LT(took, absl::Seconds(5));
}

TEST(CommTcpFailureTest, WorkerDyingMidPayloadIsUnavailable) {
  FakeWorker fake;
  std::thread worker([&] {
    fake.Accept();
    std::vector<uint8_t> payload;
    const comm_tcp::FrameHeader d = fake.ReadFrame(&payload);
    fake.Write(comm_tcp::EncodeHeader(
        {.type = comm_tcp::FrameType::kCombine,
         .layer = d.layer,
         .sender_rank = 1,
         .count = d.count,
         .hidden = d.hidden,
         .payload_bytes = comm_tcp::CombinePayloadBytes(d.count, d.hidden)}));
    fake.Write(std::vector<uint8_t>(comm_tcp::CombinePayloadBytes(d.count, d.hidden) / 2, 0));
    fake.Close();  // half a payload, then gone
  });
  auto d = TcpExpertDispatcher::Connect({fake.endpoint()}, comm_testing::FastDispatcherOptions());
  ASSERT_TRUE(d.ok()) << d.status();
  const ExpertPlacement p = *ExpertPlacement::Contiguous(4, 2, false);
  Batch b = MakeBatch(p, 64, 2, 32);
  std::vector<float> out(64 * 32, 0.0f);
  DSV2_ASSERT_OK((*d)->Dispatch(3, b.layout, b.x.data(), 32));
  const absl::Status s = (*d)->Combine(3, b.layout, out.data(), 32);
  worker.join();
  EXPECT_TRUE(absl::IsUnavailable(s)) << s;
  EXPECT_THAT(s.message(), AllOf(HasSubstr("expert-parallel rank 1"),
                                 HasSubstr("connection closed by peer during combine of layer 3")));
}

TEST(CommTcpFailureTest, WorkerGoneBeforeALargeDispatchIsUnavailable) {
  FakeWorker fake;
  std::thread worker([&] {
    fake.Accept();
    fake.Close();
  });
  auto d = TcpExpertDispatcher::Connect({fake.endpoint()}, comm_testing::FastDispatcherOptions());
  worker.join();
  ASSERT_TRUE(d.ok()) << d.status();
  const ExpertPlacement p = *ExpertPlacement::Contiguous(4, 2, false);
  Batch b = MakeBatch(p, 1024, 2, 2048);  // 8 MiB: more than the socket buffers hold
  std::vector<float> out(b.x.size(), 0.0f);
  absl::Status s = (*d)->Dispatch(0, b.layout, b.x.data(), 2048);
  if (s.ok()) s = (*d)->Combine(0, b.layout, out.data(), 2048);
  EXPECT_TRUE(absl::IsUnavailable(s)) << s;
  EXPECT_THAT(s.message(), HasSubstr("expert-parallel rank 1"));
}

TEST(CommTcpFailureTest, WorkersSeeTheCoordinatorGo) {
  TcpCluster cluster(3);
  DSV2_ASSERT_OK(cluster.Start());
  cluster.DropCoordinator();
  for (const comm_testing::WorkerResult& w : cluster.Join()) {
    EXPECT_TRUE(absl::IsUnavailable(w.end)) << w.end;
    EXPECT_THAT(w.end.message(),
                AllOf(HasSubstr("rank 0 (coordinator"), HasSubstr("connection closed by peer")));
  }
}

TEST(CommTcpFailureTest, IdleWorkerTimesOutWithoutLosingTheLink) {
  TcpWorkerOptions wo = comm_testing::FastWorkerOptions();
  wo.idle_timeout = absl::Milliseconds(100);
  auto link = TcpExpertWorkerLink::Listen(0, wo);
  ASSERT_TRUE(link.ok()) << link.status();
  absl::StatusOr<std::unique_ptr<TcpExpertDispatcher>> d;
  std::thread coordinator([&] {
    d = TcpExpertDispatcher::Connect({absl::StrCat("127.0.0.1:", (*link)->port())},
                                     comm_testing::FastDispatcherOptions());
  });
  DSV2_ASSERT_OK((*link)->WaitForCoordinator());
  coordinator.join();
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ((*link)->rank(), 1);
  EXPECT_TRUE(absl::IsInvalidArgument((*link)->SendCombine(0, nullptr, 0, 8)));  // no dispatch

  absl::StatusOr<DispatchedTokens> got = (*link)->ReceiveDispatch();
  EXPECT_TRUE(absl::IsDeadlineExceeded(got.status())) << got.status();
  // Small messages fit in the socket buffers, so one thread can play both sides.
  const ExpertPlacement p = *ExpertPlacement::Contiguous(4, 2, false);
  Batch b = MakeBatch(p, 5, 2, 8);
  DSV2_ASSERT_OK((*d)->Dispatch(0, b.layout, b.x.data(), 8));
  got = (*link)->ReceiveDispatch();
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->n, 5);
  const std::vector<float> partial(5 * 8, 1.0f);
  DSV2_ASSERT_OK((*link)->SendCombine(0, partial.data(), 5, 8));
  std::vector<float> out(5 * 8, 2.0f);
  DSV2_ASSERT_OK((*d)->Combine(0, b.layout, out.data(), 8));
  EXPECT_EQ(out[0], 3.0f);
}

TEST(CommTcpFailureTest, HandshakeRefusesAnUnexpectedRank) {
  TcpWorkerOptions wo = comm_testing::FastWorkerOptions();
  wo.expected_rank = 2;
  auto link = TcpExpertWorkerLink::Listen(0, wo);
  ASSERT_TRUE(link.ok()) << link.status();
  absl::Status worker_status;
  std::thread worker([&] { worker_status = (*link)->WaitForCoordinator(); });
  auto d = TcpExpertDispatcher::Connect({absl::StrCat("127.0.0.1:", (*link)->port())},
                                        comm_testing::FastDispatcherOptions());
  worker.join();
  EXPECT_TRUE(absl::IsFailedPrecondition(d.status())) << d.status();
  EXPECT_THAT(d.status().message(),
              AllOf(HasSubstr("rank 1"), HasSubstr("refused the handshake"),
                    HasSubstr("expects rank 2, the coordinator assigned rank 1")));
  EXPECT_TRUE(absl::IsFailedPrecondition(worker_status)) << worker_status;
}

TEST(CommTcpFailureTest, ConnectGivesUpOnAnUnreachableWorker) {
  int port = 0;
  {
    asio::io_context io;
    tcp::acceptor probe(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    port = probe.local_endpoint().port();
  }  // closed: nothing listens there now
  TcpDispatcherOptions options;
  options.connect_timeout = absl::Milliseconds(300);
  const absl::Time start = absl::Now();
  auto d = TcpExpertDispatcher::Connect({absl::StrCat("127.0.0.1:", port)}, options);
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  EXPECT_TRUE(absl::IsUnavailable(d.status())) << d.status();
  EXPECT_THAT(d.status().message(), AllOf(HasSubstr("rank 1"), HasSubstr("could not connect")));
  EXPECT_TRUE(absl::IsInvalidArgument(TcpExpertDispatcher::Connect({"no-port"}).status()));
}

TEST(CommTcpFailureTest, WorkerDropsProbesBeforeTheCoordinator) {
  auto link = TcpExpertWorkerLink::Listen(0, comm_testing::FastWorkerOptions());
  ASSERT_TRUE(link.ok()) << link.status();
  const std::string endpoint = absl::StrCat("127.0.0.1:", (*link)->port());
  absl::StatusOr<std::unique_ptr<TcpExpertDispatcher>> d;
  std::thread other([&] {
    asio::io_context io;
    tcp::socket probe(io);  // a TCP health probe: connects, closes
    probe.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), (*link)->port()));
    probe.close();
    tcp::socket junk(io);  // something speaking another protocol
    junk.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), (*link)->port()));
    asio::write(junk, asio::buffer(std::string(64, 'x')));
    junk.close();
    d = TcpExpertDispatcher::Connect({endpoint}, comm_testing::FastDispatcherOptions());
  });
  const absl::Status s = (*link)->WaitForCoordinator();
  other.join();
  EXPECT_TRUE(s.ok()) << s;
  EXPECT_TRUE(d.ok()) << d.status();
}

// The data plane's handshake with a cluster secret: the worker challenges with a fresh nonce,
// the coordinator answers with HMAC(secret, nonce ‖ hello). Every mismatch is refused by name.
struct AuthCase {
  std::string worker_secret, coordinator_secret;  // "" = none
};

absl::Status Handshake(const AuthCase& c, absl::Status* worker_status, int64_t* refusals) {
  TcpWorkerOptions wo = comm_testing::FastWorkerOptions();
  wo.accept_timeout = absl::Seconds(1);  // a refused coordinator hangs up; stop listening soon
  if (!c.worker_secret.empty()) wo.secret = ClusterSecret::FromBytes(c.worker_secret).value();
  auto link = TcpExpertWorkerLink::Listen(0, wo);
  if (!link.ok()) return link.status();
  std::thread worker([&] { *worker_status = (*link)->WaitForCoordinator(); });
  TcpDispatcherOptions dopt = comm_testing::FastDispatcherOptions();
  if (!c.coordinator_secret.empty()) {
    dopt.secret = ClusterSecret::FromBytes(c.coordinator_secret).value();
  }
  auto d = TcpExpertDispatcher::Connect({absl::StrCat("127.0.0.1:", (*link)->port())}, dopt);
  worker.join();
  *refusals = (*link)->auth_refusals();
  return d.status();
}

TEST(CommTcpAuthTest, SameSecretHandshakes) {
  absl::Status w;
  int64_t refusals = -1;
  const absl::Status d = Handshake({"sixteen-bytes-secret", "sixteen-bytes-secret"}, &w, &refusals);
  EXPECT_TRUE(d.ok()) << d;
  EXPECT_TRUE(w.ok()) << w;
  EXPECT_EQ(refusals, 0);
}

TEST(CommTcpAuthTest, AnotherSecretIsRefusedAndCounted) {
  absl::Status w;
  int64_t refusals = -1;
  const absl::Status d = Handshake({"sixteen-bytes-secret", "another-16-byte-key"}, &w, &refusals);
  EXPECT_TRUE(absl::IsFailedPrecondition(d)) << d;
  EXPECT_THAT(d.message(), HasSubstr("cluster authentication failed"));
  EXPECT_TRUE(absl::IsUnauthenticated(w)) << w;
  EXPECT_THAT(w.message(), HasSubstr("refused the coordinator at 127.0.0.1:"));
  EXPECT_EQ(refusals, 1);
}

TEST(CommTcpAuthTest, MissingSecretOnEitherSideIsNamed) {
  absl::Status w;
  int64_t refusals = -1;
  absl::Status d = Handshake({"sixteen-bytes-secret", ""}, &w, &refusals);
  EXPECT_TRUE(absl::IsFailedPrecondition(d)) << d;
  EXPECT_THAT(d.message(), HasSubstr("holds a cluster secret and this coordinator has none"));
  d = Handshake({"", "sixteen-bytes-secret"}, &w, &refusals);
  EXPECT_TRUE(absl::IsFailedPrecondition(d)) << d;
  EXPECT_THAT(d.message(), HasSubstr("holds no cluster secret while this coordinator does"));
}

// A recorded proof is worthless: each handshake's nonce is fresh, so replaying the bytes of a
// good handshake on a new connection fails.
TEST(CommTcpAuthTest, ReplayedProofIsRefused) {
  TcpWorkerOptions wo = comm_testing::FastWorkerOptions();
  wo.secret = ClusterSecret::FromBytes("sixteen-bytes-secret").value();
  auto link = TcpExpertWorkerLink::Listen(0, wo);
  ASSERT_TRUE(link.ok()) << link.status();
  absl::Status worker_status;
  std::thread worker([&] { worker_status = (*link)->WaitForCoordinator(); });
  {
    asio::io_context io;
    tcp::socket s(io);
    s.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), (*link)->port()));
    const auto hello = comm_tcp::EncodeHello({1, 2, 7});
    const auto header = comm_tcp::EncodeHeader(
        {.type = comm_tcp::FrameType::kHello, .payload_bytes = comm_tcp::kHelloPayloadBytes});
    asio::write(s, asio::buffer(header));
    asio::write(s, asio::buffer(hello));
    comm_tcp::HeaderBytes challenge_header;
    std::string nonce(comm_tcp::kAuthPayloadBytes, '\0');
    asio::read(s, asio::buffer(challenge_header));
    asio::read(s, asio::buffer(nonce));
    // The proof of an earlier handshake (another nonce), replayed.
    const ClusterSecret secret = ClusterSecret::FromBytes("sixteen-bytes-secret").value();
    const std::string old_proof =
        secret.Mac(kDataPlaneAuthContext, FreshNonce(),
                   std::string_view(reinterpret_cast<const char*>(hello.data()), hello.size()));
    const auto proof_header = comm_tcp::EncodeHeader(
        {.type = comm_tcp::FrameType::kHelloProof, .payload_bytes = comm_tcp::kAuthPayloadBytes});
    asio::write(s, asio::buffer(proof_header));
    asio::write(s, asio::buffer(old_proof));
  }
  worker.join();
  EXPECT_TRUE(absl::IsUnauthenticated(worker_status)) << worker_status;
  EXPECT_EQ((*link)->auth_refusals(), 1);
}

}  // namespace
}  // namespace dsv2
