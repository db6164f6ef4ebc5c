#include "common/comm/tcp/tcp_dispatcher.h"

#include <chrono>
#include <limits>
#include <random>
#include <thread>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
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

struct TcpExpertDispatcher::Peer {
  Peer(asio::io_context& io, int rank, std::string endpoint)
      : rank(rank), endpoint(std::move(endpoint)), socket(io) {}

  absl::Status Error(const std::string& what) const {
    return absl::UnavailableError(
        absl::StrCat("expert-parallel rank ", rank, " (", endpoint, "): ", what));
  }

  int rank;
  std::string endpoint;
  tcp::socket socket;
  HeaderBytes out_header{};
  HeaderBytes in_header{};
  std::vector<asio::const_buffer> out;  // gather list of the message being written
  std::vector<float> partial;           // [m, hidden] received partial sums
  bool done = false;                    // its part of the current exchange has finished
  absl::Status status;                  // its outcome
};

struct TcpExpertDispatcher::Impl {
  asio::io_context io;
  std::vector<std::unique_ptr<Peer>> peers;  // peers[i] is rank i + 1
  int pending = 0;                           // peers not done in the current exchange
  bool aborting = false;                     // the exchange failed: connections are closing
  size_t next_fold = 0;                      // Combine: next peer to add into `out`

  void CloseAll() {
    for (auto& p : peers) {
      ErrorCode ignored;
      p->socket.close(ignored);
    }
  }
};

TcpExpertDispatcher::TcpExpertDispatcher(const TcpDispatcherOptions& options)
    : options_(options), impl_(std::make_unique<Impl>()) {}

TcpExpertDispatcher::~TcpExpertDispatcher() { impl_->CloseAll(); }

int TcpExpertDispatcher::world_size() const { return static_cast<int>(impl_->peers.size()) + 1; }

absl::StatusOr<std::unique_ptr<TcpExpertDispatcher>> TcpExpertDispatcher::Connect(
    const std::vector<std::string>& worker_endpoints, const TcpDispatcherOptions& options) {
  if (worker_endpoints.size() >= static_cast<size_t>(std::numeric_limits<int32_t>::max())) {
    return absl::InvalidArgumentError("too many worker endpoints");
  }
  std::unique_ptr<TcpExpertDispatcher> d(new TcpExpertDispatcher(options));
  const int world = static_cast<int>(worker_endpoints.size()) + 1;
  std::random_device random;
  const uint64_t session = (uint64_t{random()} << 32) ^ random();
  const absl::Time deadline = absl::Now() + options.connect_timeout;
  for (int r = 1; r < world; ++r) {
    d->impl_->peers.push_back(std::make_unique<Peer>(d->impl_->io, r, worker_endpoints[r - 1]));
    DSV2_RETURN_IF_ERROR(d->ConnectPeer(*d->impl_->peers.back(), world, session, deadline));
  }
  return d;
}

absl::Status TcpExpertDispatcher::ConnectPeer(Peer& p, int world, uint64_t session,
                                              absl::Time deadline) {
  auto host_port = comm_tcp::SplitHostPort(p.endpoint);
  if (!host_port.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("expert-parallel rank ", p.rank, ": ", host_port.status().message()));
  }
  asio::io_context& io = impl_->io;
  // Workers may start after the coordinator: retry refused connections until the deadline.
  std::string last_error = "deadline already passed";
  absl::Duration backoff = absl::Milliseconds(20);
  while (absl::Now() < deadline) {
    tcp::resolver resolver(io);
    tcp::resolver::results_type found;
    ErrorCode ec = comm_tcp::RunOne(
        io, deadline - absl::Now(),
        [&](auto done) {
          resolver.async_resolve(host_port->first, host_port->second,
                                 [&found, done](const ErrorCode& e, auto results) {
                                   found = results;
                                   done(e);
                                 });
        },
        [&resolver] { resolver.cancel(); });
    if (!ec) {
      ec = comm_tcp::RunOne(
          io, deadline - absl::Now(),
          [&](auto done) {
            asio::async_connect(p.socket, found,
                                [done](const ErrorCode& e, const tcp::endpoint&) { done(e); });
          },
          [&p] { p.socket.close(); });
      if (!ec) break;
    }
    last_error = comm_tcp::Describe(ec);
    ErrorCode ignored;
    p.socket.close(ignored);
    std::this_thread::sleep_for(absl::ToChronoMilliseconds(
        std::max(absl::ZeroDuration(), std::min(backoff, deadline - absl::Now()))));
    backoff = std::min(backoff * 2, absl::Milliseconds(500));
  }
  if (!p.socket.is_open()) {
    return p.Error(absl::StrCat("could not connect within ",
                                comm_tcp::DurationText(options_.connect_timeout), ": ",
                                last_error));
  }
  comm_tcp::SetSocketOptions(p.socket);

  // Handshake: hello {rank, world, session} → the same echoed in a hello-ack, or a reject.
  const comm_tcp::HelloPayload hello{p.rank, world, session};
  const auto hello_bytes = comm_tcp::EncodeHello(hello);
  p.out_header = comm_tcp::EncodeHeader(
      {.type = FrameType::kHello, .sender_rank = 0, .payload_bytes = comm_tcp::kHelloPayloadBytes});
  const std::array<asio::const_buffer, 2> hello_out{asio::buffer(p.out_header),
                                                    asio::buffer(hello_bytes)};
  ErrorCode ec = comm_tcp::WriteBefore(io, p.socket, hello_out, deadline);
  if (!ec) ec = comm_tcp::ReadBefore(io, p.socket, asio::buffer(p.in_header), deadline);
  if (ec) return p.Error(absl::StrCat("handshake failed: ", comm_tcp::Describe(ec)));
  absl::StatusOr<FrameHeader> reply =
      comm_tcp::DecodeHeader(p.in_header, comm_tcp::kMaxRejectBytes);
  if (!reply.ok()) return p.Error(absl::StrCat("bad handshake reply: ", reply.status().message()));
  const auto who = [&] {
    return absl::StrCat("expert-parallel rank ", p.rank, " (", p.endpoint, ")");
  };
  if (reply->type == FrameType::kHelloChallenge) {
    if (!options_.secret.enabled()) {
      return absl::FailedPreconditionError(absl::StrCat(
          who(),
          " holds a cluster secret and this coordinator has none: start it with the same "
          "--cluster-secret-file (or DSV2_CLUSTER_SECRET)"));
    }
    std::string nonce(comm_tcp::kAuthPayloadBytes, '\0');
    ec = comm_tcp::ReadBefore(io, p.socket, asio::buffer(nonce), deadline);
    if (ec) return p.Error(absl::StrCat("handshake failed: ", comm_tcp::Describe(ec)));
    const std::string proof = options_.secret.Mac(
        kDataPlaneAuthContext, nonce,
        std::string_view(reinterpret_cast<const char*>(hello_bytes.data()), hello_bytes.size()));
    p.out_header = comm_tcp::EncodeHeader({.type = FrameType::kHelloProof,
                                           .sender_rank = 0,
                                           .payload_bytes = comm_tcp::kAuthPayloadBytes});
    const std::array<asio::const_buffer, 2> proof_out{asio::buffer(p.out_header),
                                                      asio::buffer(proof)};
    ec = comm_tcp::WriteBefore(io, p.socket, proof_out, deadline);
    if (!ec) ec = comm_tcp::ReadBefore(io, p.socket, asio::buffer(p.in_header), deadline);
    if (ec) return p.Error(absl::StrCat("handshake failed: ", comm_tcp::Describe(ec)));
    reply = comm_tcp::DecodeHeader(p.in_header, comm_tcp::kMaxRejectBytes);
    if (!reply.ok())
      return p.Error(absl::StrCat("bad handshake reply: ", reply.status().message()));
  } else if (options_.secret.enabled() && reply->type == FrameType::kHelloAck) {
    return absl::FailedPreconditionError(
        absl::StrCat(who(),
                     " holds no cluster secret while this coordinator does: start it with the same "
                     "--cluster-secret-file (or DSV2_CLUSTER_SECRET)"));
  }
  if (reply->type == FrameType::kHelloReject) {
    std::string reason(reply->payload_bytes, '\0');
    ec = comm_tcp::ReadBefore(io, p.socket, asio::buffer(reason), deadline);
    return absl::FailedPreconditionError(
        absl::StrCat("expert-parallel rank ", p.rank, " (", p.endpoint,
                     ") refused the handshake: ", ec ? comm_tcp::Describe(ec) : reason));
  }
  if (reply->type != FrameType::kHelloAck) {
    return p.Error(absl::StrCat("expected a hello-ack, got a ", FrameTypeName(reply->type)));
  }
  std::array<uint8_t, comm_tcp::kHelloPayloadBytes> ack_bytes{};
  ec = comm_tcp::ReadBefore(io, p.socket, asio::buffer(ack_bytes), deadline);
  if (ec) return p.Error(absl::StrCat("handshake failed: ", comm_tcp::Describe(ec)));
  const comm_tcp::HelloPayload ack = comm_tcp::DecodeHello(ack_bytes);
  if (ack.rank != hello.rank || ack.world_size != hello.world_size ||
      ack.session != hello.session) {
    return absl::FailedPreconditionError(absl::StrCat(
        "expert-parallel rank ", p.rank, " (", p.endpoint, ") acknowledged rank ", ack.rank,
        " of world size ", ack.world_size, ", expected rank ", p.rank, " of ", world));
  }
  const int64_t hello_size = comm_tcp::kFrameHeaderBytes + comm_tcp::kHelloPayloadBytes;
  Count(-1,
        {.bytes_sent = hello_size,
         .bytes_received = hello_size,
         .messages_sent = 1,
         .messages_received = 1},
        p.rank);
  return absl::OkStatus();
}

absl::Status TcpExpertDispatcher::CheckCall(const DispatchLayout& layout, const void* data,
                                            int64_t hidden) const {
  DSV2_RETURN_IF_ERROR(broken_);
  if (layout.world_size() != world_size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "dispatch layout for world size ", layout.world_size(), ", dispatcher has ", world_size()));
  }
  if (hidden < 1 || hidden > std::numeric_limits<int32_t>::max()) {
    return absl::InvalidArgumentError(absl::StrCat("hidden must be in [1, 2^31), got ", hidden));
  }
  if (layout.top_k() > std::numeric_limits<int32_t>::max()) {
    return absl::InvalidArgumentError(absl::StrCat("top_k ", layout.top_k(), " is too large"));
  }
  if (data == nullptr && layout.n_tokens() > 0) {
    return absl::InvalidArgumentError("activation pointer is null");
  }
  return absl::OkStatus();
}

void TcpExpertDispatcher::Finish(Peer& p, absl::Status status) {
  if (p.done) return;
  p.done = true;
  if (p.status.ok()) p.status = std::move(status);
  --impl_->pending;
  if (!p.status.ok() && !impl_->aborting) {
    // Fail fast: the dispatcher is broken anyway; closing the other connections completes
    // their operations now (they report Cancelled) and tells the workers at once.
    impl_->aborting = true;
    impl_->CloseAll();
  }
}

absl::Status TcpExpertDispatcher::RunExchange(const std::string& what) {
  // Peers still busy at the timeout are reported silent; the result is in their statuses.
  comm_tcp::RunUntilDone(impl_->io, impl_->pending, options_.timeout, [&] {
    for (auto& p : impl_->peers) {
      if (!p->done && p->status.ok()) {
        p->status =
            p->Error(absl::StrCat("no ", what, " within ", comm_tcp::DurationText(options_.timeout),
                                  " (peer silent or stalled)"));
      }
    }
    impl_->aborting = true;
    impl_->CloseAll();
  });
  std::vector<std::string> errors;
  absl::StatusCode code = absl::StatusCode::kOk;
  for (auto& p : impl_->peers) {
    if (p->status.ok() || absl::IsCancelled(p->status)) continue;
    if (code == absl::StatusCode::kOk) code = p->status.code();
    errors.emplace_back(p->status.message());
  }
  if (errors.empty()) return absl::OkStatus();
  broken_ = absl::Status(code, absl::StrJoin(errors, "; "));
  return broken_;
}

absl::Status TcpExpertDispatcher::Dispatch(int layer, const DispatchLayout& layout, const float* x,
                                           int64_t hidden) {
  DSV2_RETURN_IF_ERROR(CheckCall(layout, x, hidden));
  dispatch_start_ = std::chrono::steady_clock::now();
  const int64_t k = layout.top_k();
  const std::string what = absl::StrCat("dispatch of layer ", layer);
  impl_->pending = static_cast<int>(impl_->peers.size());
  for (auto& peer : impl_->peers) {
    Peer& p = *peer;
    p.done = false;
    p.status = absl::OkStatus();
    const std::vector<int64_t>& tokens = layout.tokens(p.rank);
    const int64_t m = static_cast<int64_t>(tokens.size());
    const FrameHeader h{.type = FrameType::kDispatch,
                        .layer = layer,
                        .sender_rank = 0,
                        .count = m,
                        .hidden = static_cast<int32_t>(hidden),
                        .top_k = static_cast<int32_t>(k),
                        .payload_bytes = comm_tcp::DispatchPayloadBytes(m, hidden, k)};
    p.out_header = comm_tcp::EncodeHeader(h);
    p.out.clear();
    p.out.push_back(asio::buffer(p.out_header));
    // x rows straight from the caller's buffer (no gather copy); runs of consecutive tokens go
    // out as one buffer.
    for (int64_t i = 0; i < m;) {
      int64_t j = i + 1;
      while (j < m && tokens[j] == tokens[j - 1] + 1) ++j;
      p.out.push_back(asio::buffer(x + tokens[i] * hidden, (j - i) * hidden * sizeof(float)));
      i = j;
    }
    if (m > 0) {
      p.out.push_back(asio::buffer(layout.expert(p.rank)));
      p.out.push_back(asio::buffer(layout.weight(p.rank)));
    }
    const int64_t bytes = comm_tcp::kFrameHeaderBytes + h.payload_bytes;
    asio::async_write(p.socket, p.out, [this, &p, layer, bytes, what](const ErrorCode& ec, size_t) {
      if (ec == asio::error::operation_aborted) return Finish(p, absl::CancelledError());
      if (ec) return Finish(p, p.Error(absl::StrCat(comm_tcp::Describe(ec), " during ", what)));
      Count(layer, {.bytes_sent = bytes, .messages_sent = 1}, p.rank);
      Finish(p, absl::OkStatus());
    });
  }
  return RunExchange(what);
}

absl::Status TcpExpertDispatcher::Combine(int layer, const DispatchLayout& layout, float* out,
                                          int64_t hidden) {
  DSV2_RETURN_IF_ERROR(CheckCall(layout, out, hidden));
  const std::string what = absl::StrCat("combine of layer ", layer);
  impl_->pending = static_cast<int>(impl_->peers.size());
  impl_->next_fold = 0;
  for (auto& peer : impl_->peers) {
    peer->done = false;
    peer->status = absl::OkStatus();
  }
  for (auto& peer : impl_->peers) {
    Peer& p = *peer;
    const int64_t m = layout.tokens_per_rank()[p.rank];
    auto on_payload = [this, &p, &layout, out, hidden, layer](const ErrorCode& ec, size_t) {
      if (ec == asio::error::operation_aborted) return Finish(p, absl::CancelledError());
      if (ec) {
        return Finish(
            p, p.Error(absl::StrCat(comm_tcp::Describe(ec), " during combine of layer ", layer)));
      }
      Count(layer,
            {.bytes_received = static_cast<int64_t>(comm_tcp::kFrameHeaderBytes +
                                                    p.partial.size() * sizeof(float)),
             .messages_received = 1},
            p.rank);
      CountExchange(
          p.rank, std::chrono::duration<double>(std::chrono::steady_clock::now() - dispatch_start_)
                      .count());
      Finish(p, absl::OkStatus());
      FoldCombined(layout, out, hidden);
    };
    auto on_header = [this, &p, m, hidden, layer, what, on_payload](const ErrorCode& ec, size_t) {
      if (ec == asio::error::operation_aborted) return Finish(p, absl::CancelledError());
      if (ec) return Finish(p, p.Error(absl::StrCat(comm_tcp::Describe(ec), " during ", what)));
      absl::StatusOr<FrameHeader> h = comm_tcp::DecodeHeader(p.in_header, options_.max_frame_bytes);
      if (!h.ok()) return Finish(p, p.Error(std::string(h.status().message())));
      if (h->type != FrameType::kCombine || h->layer != layer || h->count != m ||
          h->hidden != hidden) {
        return Finish(
            p, p.Error(absl::StrCat("expected a combine of layer ", layer, " with ", m, " x ",
                                    hidden, " values, got a ", FrameTypeName(h->type), " of layer ",
                                    h->layer, " with ", h->count, " x ", h->hidden)));
      }
      p.partial.resize(m * hidden);
      asio::async_read(p.socket, asio::buffer(p.partial), on_payload);
    };
    asio::async_read(p.socket, asio::buffer(p.in_header), on_header);
  }
  return RunExchange(what);
}

void TcpExpertDispatcher::FoldCombined(const DispatchLayout& layout, float* out, int64_t hidden) {
  // Partial sums are added in rank order as soon as every lower rank is in, so the result is
  // the same bits whatever order the workers answer in.
  auto& peers = impl_->peers;
  while (impl_->next_fold < peers.size() && peers[impl_->next_fold]->done &&
         peers[impl_->next_fold]->status.ok()) {
    const Peer& p = *peers[impl_->next_fold++];
    const std::vector<int64_t>& tokens = layout.tokens(p.rank);
    for (size_t i = 0; i < tokens.size(); ++i) {
      float* dst = out + tokens[i] * hidden;             // [hidden]
      const float* src = p.partial.data() + i * hidden;  // [hidden]
      for (int64_t j = 0; j < hidden; ++j) dst[j] += src[j];
    }
  }
}

absl::Status TcpExpertDispatcher::Drain() {
  DSV2_RETURN_IF_ERROR(broken_);
  impl_->pending = static_cast<int>(impl_->peers.size());
  for (auto& peer : impl_->peers) {
    Peer& p = *peer;
    p.done = false;
    p.status = absl::OkStatus();
    p.out_header = comm_tcp::EncodeHeader({.type = FrameType::kDrain, .sender_rank = 0});
    asio::async_write(
        p.socket, asio::buffer(p.out_header), [this, &p](const ErrorCode& ec, size_t) {
          if (ec == asio::error::operation_aborted) return Finish(p, absl::CancelledError());
          if (ec) return Finish(p, p.Error(absl::StrCat(comm_tcp::Describe(ec), " during drain")));
          Count(-1, {.bytes_sent = comm_tcp::kFrameHeaderBytes, .messages_sent = 1}, p.rank);
          // The worker reads the drain, then end-of-stream.
          ErrorCode ignored;
          p.socket.shutdown(tcp::socket::shutdown_send, ignored);
          Finish(p, absl::OkStatus());
        });
  }
  DSV2_RETURN_IF_ERROR(RunExchange("drain"));
  broken_ = absl::FailedPreconditionError("the expert dispatcher has been drained");
  return absl::OkStatus();
}

void TcpExpertDispatcher::Count(int layer, const CommCounters& delta, int rank) {
  std::lock_guard<std::mutex> lock(stats_mu_);
  AddCommCounters(stats_, layer, delta, rank);
}

void TcpExpertDispatcher::CountExchange(int rank, double seconds) {
  std::lock_guard<std::mutex> lock(stats_mu_);
  RankCommStats& r = stats_.ranks[rank];
  r.exchange_seconds_sum += seconds;
  ++r.exchanges;
}

CommStats TcpExpertDispatcher::stats() const {
  std::lock_guard<std::mutex> lock(stats_mu_);
  return stats_;
}

}  // namespace dsv2
