#include "common/comm/tcp/tcp_worker_link.h"

#include <limits>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/comm/tcp/asio_util.h"
#include "common/comm/tcp/frame.h"
#include "common/status_macros.h"

namespace dsv2 {

namespace asio = boost::asio;
using comm_tcp::ErrorCode;
using comm_tcp::FrameHeader;
using comm_tcp::FrameType;
using comm_tcp::HeaderBytes;
using comm_tcp::tcp;

struct TcpExpertWorkerLink::Impl {
  asio::io_context io;
  tcp::acceptor acceptor{io};
  tcp::socket socket{io};     // the coordinator, once connected
  tcp::socket candidate{io};  // a connection being handshaken
  std::string coordinator;    // its address, for messages
  HeaderBytes header{};
};

TcpExpertWorkerLink::TcpExpertWorkerLink(const TcpWorkerOptions& options)
    : options_(options), impl_(std::make_unique<Impl>()) {}

TcpExpertWorkerLink::~TcpExpertWorkerLink() { Close(); }

absl::StatusOr<std::unique_ptr<TcpExpertWorkerLink>> TcpExpertWorkerLink::Listen(
    int port, const TcpWorkerOptions& options) {
  if (port < 0 || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("port must be in [0, 65535], got ", port));
  }
  std::unique_ptr<TcpExpertWorkerLink> link(new TcpExpertWorkerLink(options));
  ErrorCode ec;
  const asio::ip::address address = asio::ip::make_address(options.bind_address, ec);
  if (ec) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad bind address \"", options.bind_address, "\": ", ec.message()));
  }
  const tcp::endpoint endpoint(address, static_cast<uint16_t>(port));
  tcp::acceptor& acceptor = link->impl_->acceptor;
  acceptor.open(endpoint.protocol(), ec);
  if (!ec) acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor.bind(endpoint, ec);
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", options.bind_address, ":", port, ": ", ec.message()));
  }
  return link;
}

int TcpExpertWorkerLink::port() const {
  ErrorCode ec;
  const tcp::endpoint local = impl_->acceptor.local_endpoint(ec);
  return ec ? -1 : local.port();
}

void TcpExpertWorkerLink::Close() {
  ErrorCode ignored;
  impl_->socket.close(ignored);
  connected_ = false;
}

absl::Status TcpExpertWorkerLink::WaitForCoordinator() {
  Close();
  asio::io_context& io = impl_->io;
  const absl::Time deadline = absl::Now() + options_.accept_timeout;
  while (true) {
    ErrorCode ignored;
    impl_->candidate.close(ignored);
    const ErrorCode ec = comm_tcp::RunOne(
        io, deadline - absl::Now(),
        [&](auto done) {
          impl_->acceptor.async_accept(impl_->candidate, [done](const ErrorCode& e) { done(e); });
        },
        [&] { impl_->acceptor.cancel(); });
    if (ec == asio::error::timed_out) {
      return absl::DeadlineExceededError(
          absl::StrCat("no coordinator completed a handshake on port ", port(), " within ",
                       comm_tcp::DurationText(options_.accept_timeout)));
    }
    if (ec) return absl::UnavailableError(absl::StrCat("accept failed: ", ec.message()));
    comm_tcp::SetSocketOptions(impl_->candidate);
    bool refused = false;
    const absl::Status handshake =
        Handshake(std::min(deadline, absl::Now() + options_.timeout), &refused);
    if (handshake.ok()) {
      impl_->socket = std::move(impl_->candidate);
      impl_->candidate = tcp::socket(io);
      connected_ = true;
      broken_ = absl::OkStatus();
      awaiting_combine_ = false;
      return absl::OkStatus();
    }
    if (refused) return handshake;
    // Not a coordinator (a probe, a stray client, a timeout): drop it and keep listening.
  }
}

absl::Status TcpExpertWorkerLink::Handshake(absl::Time deadline, bool* refused) {
  asio::io_context& io = impl_->io;
  tcp::socket& s = impl_->candidate;
  ErrorCode ec;
  const tcp::endpoint remote = s.remote_endpoint(ec);
  impl_->coordinator =
      ec ? "unknown address" : absl::StrCat(remote.address().to_string(), ":", remote.port());
  ec = comm_tcp::ReadBefore(io, s, asio::buffer(impl_->header), deadline);
  if (ec) return absl::UnavailableError(comm_tcp::Describe(ec));
  absl::StatusOr<FrameHeader> h =
      comm_tcp::DecodeHeader(impl_->header, comm_tcp::kHelloPayloadBytes);
  if (!h.ok()) return h.status();
  if (h->type != FrameType::kHello) return absl::DataLossError("first frame is not a hello");
  std::array<uint8_t, comm_tcp::kHelloPayloadBytes> payload{};
  ec = comm_tcp::ReadBefore(io, s, asio::buffer(payload), deadline);
  if (ec) return absl::UnavailableError(comm_tcp::Describe(ec));
  const comm_tcp::HelloPayload hello = comm_tcp::DecodeHello(payload);

  std::string reason;
  if (hello.world_size < 2 || hello.rank < 1 || hello.rank >= hello.world_size) {
    reason = absl::StrCat("rank ", hello.rank, " of world size ", hello.world_size,
                          " is not a worker rank");
  } else if (options_.expected_rank >= 0 && hello.rank != options_.expected_rank) {
    reason = absl::StrCat("this worker expects rank ", options_.expected_rank,
                          ", the coordinator assigned rank ", hello.rank);
  } else if (options_.expected_world_size > 0 && hello.world_size != options_.expected_world_size) {
    reason = absl::StrCat("this worker expects world size ", options_.expected_world_size,
                          ", the coordinator has ", hello.world_size);
  }
  FrameHeader reply{.sender_rank = hello.rank};
  std::array<uint8_t, comm_tcp::kHelloPayloadBytes> echo = comm_tcp::EncodeHello(hello);
  if (!reason.empty()) {
    reply.type = FrameType::kHelloReject;
    reply.payload_bytes = static_cast<int64_t>(reason.size());
    impl_->header = comm_tcp::EncodeHeader(reply);
    const std::array<asio::const_buffer, 2> out{asio::buffer(impl_->header), asio::buffer(reason)};
    comm_tcp::WriteBefore(io, s, out, deadline);  // best effort: the refusal is what matters
    *refused = true;
    return absl::FailedPreconditionError(
        absl::StrCat("refused the coordinator at ", impl_->coordinator, ": ", reason));
  }
  if (options_.secret.enabled()) {
    // Challenge: a fresh nonce; the proof must be HMAC(secret, nonce ‖ this hello).
    const std::string nonce = FreshNonce();
    reply.type = FrameType::kHelloChallenge;
    reply.payload_bytes = comm_tcp::kAuthPayloadBytes;
    impl_->header = comm_tcp::EncodeHeader(reply);
    const std::array<asio::const_buffer, 2> challenge{asio::buffer(impl_->header),
                                                      asio::buffer(nonce)};
    ec = comm_tcp::WriteBefore(io, s, challenge, deadline);
    if (!ec) ec = comm_tcp::ReadBefore(io, s, asio::buffer(impl_->header), deadline);
    if (ec) return absl::UnavailableError(comm_tcp::Describe(ec));
    absl::StatusOr<FrameHeader> proof_header =
        comm_tcp::DecodeHeader(impl_->header, comm_tcp::kAuthPayloadBytes);
    std::string proof(comm_tcp::kAuthPayloadBytes, '\0');
    if (proof_header.ok() && proof_header->type == FrameType::kHelloProof) {
      ec = comm_tcp::ReadBefore(io, s, asio::buffer(proof), deadline);
      if (ec) return absl::UnavailableError(comm_tcp::Describe(ec));
    }
    const std::string_view hello_bytes(reinterpret_cast<const char*>(payload.data()),
                                       payload.size());
    if (!proof_header.ok() || proof_header->type != FrameType::kHelloProof ||
        !options_.secret.Verify(kDataPlaneAuthContext, nonce, hello_bytes, proof)) {
      ++auth_refusals_;
      const std::string why =
          "cluster authentication failed: the coordinator did not prove it "
          "holds this cluster's secret";
      reply.type = FrameType::kHelloReject;
      reply.payload_bytes = static_cast<int64_t>(why.size());
      impl_->header = comm_tcp::EncodeHeader(reply);
      const std::array<asio::const_buffer, 2> out{asio::buffer(impl_->header), asio::buffer(why)};
      comm_tcp::WriteBefore(io, s, out, deadline);  // best effort
      *refused = true;
      return absl::UnauthenticatedError(
          absl::StrCat("refused the coordinator at ", impl_->coordinator, ": ", why));
    }
  }
  reply.type = FrameType::kHelloAck;
  reply.payload_bytes = comm_tcp::kHelloPayloadBytes;
  impl_->header = comm_tcp::EncodeHeader(reply);
  const std::array<asio::const_buffer, 2> out{asio::buffer(impl_->header), asio::buffer(echo)};
  ec = comm_tcp::WriteBefore(io, s, out, deadline);
  if (ec) return absl::UnavailableError(comm_tcp::Describe(ec));
  rank_ = hello.rank;
  world_size_ = hello.world_size;
  return absl::OkStatus();
}

absl::Status TcpExpertWorkerLink::CoordinatorError(const std::string& what) const {
  return absl::UnavailableError(absl::StrCat("expert-parallel rank 0 (coordinator at ",
                                             impl_->coordinator, "), seen by rank ", rank_, ": ",
                                             what));
}

absl::Status TcpExpertWorkerLink::Break(absl::Status status) {
  Close();
  broken_ = status;
  return status;
}

absl::StatusOr<DispatchedTokens> TcpExpertWorkerLink::ReceiveDispatch() {
  DSV2_RETURN_IF_ERROR(broken_);
  if (!connected_) {
    return absl::FailedPreconditionError("no coordinator connected: call WaitForCoordinator");
  }
  asio::io_context& io = impl_->io;
  tcp::socket& s = impl_->socket;
  // Idle wait: nothing is consumed, so a timeout here leaves the stream intact.
  ErrorCode ec = comm_tcp::RunOne(
      io, options_.idle_timeout,
      [&](auto done) {
        s.async_wait(tcp::socket::wait_read, [done](const ErrorCode& e) { done(e); });
      },
      [&s] {
        ErrorCode ignored;
        s.cancel(ignored);
      });
  if (ec == asio::error::timed_out) {
    return absl::DeadlineExceededError(absl::StrCat("no dispatch from rank 0 within ",
                                                    comm_tcp::DurationText(options_.idle_timeout),
                                                    " (link intact)"));
  }
  if (ec) return Break(CoordinatorError(comm_tcp::Describe(ec) + " while idle"));

  const absl::Time deadline = absl::Now() + options_.timeout;
  ec = comm_tcp::ReadBefore(io, s, asio::buffer(impl_->header), deadline);
  if (ec) return Break(CoordinatorError(comm_tcp::Describe(ec) + " while reading a dispatch"));
  absl::StatusOr<FrameHeader> h = comm_tcp::DecodeHeader(impl_->header, options_.max_frame_bytes);
  if (!h.ok()) return Break(CoordinatorError(std::string(h.status().message())));
  if (h->type == FrameType::kDrain) {
    broken_ = absl::FailedPreconditionError("the coordinator drained this link");
    return DispatchedTokens{.layer = h->layer, .drain = true};
  }
  if (h->type != FrameType::kDispatch) {
    return Break(
        CoordinatorError(absl::StrCat("expected a dispatch, got a ", FrameTypeName(h->type))));
  }
  const int64_t n = h->count, hidden = h->hidden, k = h->top_k;
  x_.resize(n * hidden);
  expert_.resize(n * k);
  weight_.resize(n * k);
  if (n > 0) {
    const std::array<asio::mutable_buffer, 3> in{asio::buffer(x_), asio::buffer(expert_),
                                                 asio::buffer(weight_)};
    ec = comm_tcp::ReadBefore(io, s, in, deadline);
    if (ec) {
      return Break(CoordinatorError(
          absl::StrCat(comm_tcp::Describe(ec), " while reading the dispatch of layer ", h->layer)));
    }
  }
  awaiting_combine_ = true;
  last_layer_ = h->layer;
  last_n_ = n;
  last_hidden_ = hidden;
  return DispatchedTokens{.layer = h->layer,
                          .n = n,
                          .k = k,
                          .hidden = hidden,
                          .x = x_.data(),
                          .expert = expert_.data(),
                          .weight = weight_.data()};
}

absl::Status TcpExpertWorkerLink::SendCombine(int layer, const float* partial, int64_t n,
                                              int64_t hidden) {
  DSV2_RETURN_IF_ERROR(broken_);
  if (!connected_) {
    return absl::FailedPreconditionError("no coordinator connected: call WaitForCoordinator");
  }
  if (!awaiting_combine_ || layer != last_layer_ || n != last_n_ || hidden != last_hidden_) {
    return absl::InvalidArgumentError(absl::StrCat(
        "combine of layer ", layer, " with ", n, " x ", hidden, " values does not answer the ",
        "last dispatch (layer ", last_layer_, ", ", last_n_, " x ", last_hidden_, ")"));
  }
  if (partial == nullptr && n > 0) return absl::InvalidArgumentError("partial is null");
  const FrameHeader h{.type = FrameType::kCombine,
                      .layer = layer,
                      .sender_rank = rank_,
                      .count = n,
                      .hidden = static_cast<int32_t>(hidden),
                      .payload_bytes = comm_tcp::CombinePayloadBytes(n, hidden)};
  impl_->header = comm_tcp::EncodeHeader(h);
  const std::array<asio::const_buffer, 2> out{asio::buffer(impl_->header),
                                              asio::buffer(partial, n * hidden * sizeof(float))};
  const ErrorCode ec =
      comm_tcp::WriteBefore(impl_->io, impl_->socket, out, absl::Now() + options_.timeout);
  if (ec) {
    return Break(CoordinatorError(
        absl::StrCat(comm_tcp::Describe(ec), " while sending the combine of layer ", layer)));
  }
  awaiting_combine_ = false;
  return absl::OkStatus();
}

}  // namespace dsv2
