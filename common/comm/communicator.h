// The expert-parallel communication interface (DeepEP-shaped). Rank 0, the coordinator, holds
// every token's activations; ranks 1..W-1, the workers, host contiguous shards of the routed
// experts (ExpertPlacement). Per MoE layer, in lockstep:
//
//   coordinator                                   worker r
//   layout = DispatchLayout::Compute(top-k)
//   Dispatch(layer, layout, x)     ── counts, then payload ──►  ReceiveDispatch()
//                                                             partial = Σ_slots w · expert(x)
//   Combine(layer, layout, out)    ◄── one partial per token ──  SendCombine(layer, partial)
//   ...
//   Drain()                        ── drain ──►                ReceiveDispatch().drain
//
// Every worker takes part in every layer, also with zero tokens (that is how a silent worker is
// noticed). A token crosses to a rank once, with the k slots of (expert id, weight) that belong
// to that rank; the rank returns one weighted partial sum per token it received, and Combine adds
// them in the fixed order rank 1, 2, ..., so results never depend on arrival order.
//
// Failures: every blocking call has a timeout. A peer that disconnects, stalls mid-message, or
// stays silent past the timeout turns into UNAVAILABLE naming the peer's rank; the communicator
// then stays broken (every later call returns that status) and is rebuilt by its owner.
//
// Memory: activation pointers (x, out, partial, DispatchedTokens::x) are in the transport's
// memory space: host memory for TCP, device memory for NCCL. Expert ids and weights are always
// host memory. Neither side is thread-safe; use one thread per communicator (stats() excepted).
#pragma once

#include <cstdint>
#include <map>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/comm/dispatch_layout.h"

namespace dsv2 {

// The size of an ncclUniqueId (NCCL_UNIQUE_ID_BYTES, checked where nccl.h is included): what the
// control plane carries to every rank of an NCCL data plane.
inline constexpr int kNcclUniqueIdBytes = 128;

// Whether this build has the NCCL transport (common/comm/nccl/: CUDA and NCCL were found).
#if DSV2_COMM_HAVE_NCCL
inline constexpr bool kNcclTransportBuilt = true;
#else
inline constexpr bool kNcclTransportBuilt = false;
#endif

struct CommCounters {
  int64_t bytes_sent = 0;  // on the wire: headers + payloads
  int64_t bytes_received = 0;
  int64_t messages_sent = 0;
  int64_t messages_received = 0;
};

// One worker rank's exchanges: its counters, and the time from the start of a layer's Dispatch
// to the arrival of its Combine (what a layer waits for that worker).
struct RankCommStats {
  CommCounters counters;
  double exchange_seconds_sum = 0;
  int64_t exchanges = 0;
};

struct CommStats {
  std::map<int, CommCounters> layers;  // by layer tag: Dispatch sends, Combine receives
  CommCounters total;                  // everything, handshakes and drain included
  std::map<int, RankCommStats> ranks;  // by worker rank (transports that track it: TCP)
};

// Adds `delta` to stats.total and, for layer >= 0, to stats.layers[layer]; for rank >= 1 to
// stats.ranks[rank] too.
inline void AddCommCounters(CommStats& stats, int layer, const CommCounters& delta, int rank = -1) {
  if (rank >= 1) {
    CommCounters& c = stats.ranks[rank].counters;
    c.bytes_sent += delta.bytes_sent;
    c.bytes_received += delta.bytes_received;
    c.messages_sent += delta.messages_sent;
    c.messages_received += delta.messages_received;
  }
  auto add = [&delta](CommCounters& c) {
    c.bytes_sent += delta.bytes_sent;
    c.bytes_received += delta.bytes_received;
    c.messages_sent += delta.messages_sent;
    c.messages_received += delta.messages_received;
  };
  add(stats.total);
  if (layer >= 0) add(stats.layers[layer]);
}

// Coordinator side (rank 0).
class ExpertDispatcher {
 public:
  virtual ~ExpertDispatcher() = default;
  virtual int world_size() const = 0;

  // Sends each worker rank its tokens of `layout`: the count first, then the payload (x rows
  // [m, hidden] float32, then [m, k] expert ids, then [m, k] weights). x: [n_tokens, hidden].
  // Returns once every worker has taken its message; `layer` tags it.
  virtual absl::Status Dispatch(int layer, const DispatchLayout& layout, const float* x,
                                int64_t hidden) = 0;

  // Receives every worker's partial sums for `layer` and adds them into out [n_tokens, hidden]
  // in rank order 1, 2, ..., W-1. When rank 0 hosts experts, add its partial into `out` first.
  virtual absl::Status Combine(int layer, const DispatchLayout& layout, float* out,
                               int64_t hidden) = 0;

  // Tells every worker to leave its layer loop; the dispatcher is closed afterwards.
  virtual absl::Status Drain() = 0;

  virtual CommStats stats() const = 0;
};

// What a worker receives for one layer. The pointers are views into buffers the link owns,
// valid until the next ReceiveDispatch on the same link.
struct DispatchedTokens {
  int layer = -1;
  bool drain = false;  // the coordinator is draining: leave the layer loop (nothing else is set)
  int64_t n = 0;       // tokens received, ascending token order of the coordinator's batch
  int64_t k = 0;
  int64_t hidden = 0;
  const float* x = nullptr;         // [n, hidden] transport memory space
  const int32_t* expert = nullptr;  // [n, k] host; -1 = slot not on this rank
  const float* weight = nullptr;    // [n, k] host; 0 where expert is -1
};

// Worker side (rank >= 1).
class ExpertWorkerLink {
 public:
  virtual ~ExpertWorkerLink() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;

  // Waits for the next layer's tokens (or the drain). DEADLINE_EXCEEDED when no message started
  // within the idle timeout (nothing is lost; call again); UNAVAILABLE when the coordinator is
  // gone or stalls mid-message.
  virtual absl::StatusOr<DispatchedTokens> ReceiveDispatch() = 0;

  // Returns one partial sum per received token, partial: [n, hidden], in received order; layer
  // and n must match the last ReceiveDispatch.
  virtual absl::Status SendCombine(int layer, const float* partial, int64_t n, int64_t hidden) = 0;
};

}  // namespace dsv2
