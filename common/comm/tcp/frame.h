// The TCP wire format of the expert-parallel communicator. Every message is a 40-byte header,
// little-endian, followed by `payload_bytes` of payload:
//
//   offset size  field
//   0      4     magic 0x32565344 ("DSV2" in memory)
//   4      2     version (1)
//   6      2     type (FrameType)
//   8      4     layer (int32; -1 outside a layer)
//   12     4     sender rank (int32)
//   16     8     count: tokens of a dispatch/combine (int64)
//   24     4     hidden (int32)
//   28     4     top_k (int32)
//   32     8     payload_bytes (int64)
//
// Payloads: kDispatch  x rows [count, hidden] f32, expert ids [count, top_k] i32,
//                      weights [count, top_k] f32 (so the count precedes its payload)
//           kCombine   partial sums [count, hidden] f32
//           kHello     HelloPayload (coordinator → worker), kHelloAck the same echoed back
//           kHelloReject  the reason, UTF-8 text
//           kDrain     none
// Values are raw IEEE-754 / two's complement in little-endian byte order.
#pragma once

#include <array>
#include <bit>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace dsv2::comm_tcp {

static_assert(std::endian::native == std::endian::little,
              "the TCP transport sends raw little-endian floats");

inline constexpr uint32_t kFrameMagic = 0x32565344;
inline constexpr uint16_t kFrameVersion = 1;
inline constexpr size_t kFrameHeaderBytes = 40;
inline constexpr size_t kHelloPayloadBytes = 16;
inline constexpr size_t kAuthPayloadBytes = 32;  // a nonce or an HMAC-SHA-256
inline constexpr int64_t kMaxRejectBytes = 1024;

enum class FrameType : uint16_t {
  kHello = 1,
  kHelloAck = 2,
  kHelloReject = 3,
  kDispatch = 4,
  kCombine = 5,
  kDrain = 6,
  // With a cluster secret: the worker answers a hello with a challenge (a fresh nonce), the
  // coordinator proves it holds the secret (HMAC over the nonce and its hello), then the ack.
  kHelloChallenge = 7,
  kHelloProof = 8,
};
const char* FrameTypeName(FrameType type);

struct FrameHeader {
  FrameType type = FrameType::kDrain;
  int32_t layer = -1;
  int32_t sender_rank = 0;
  int64_t count = 0;
  int32_t hidden = 0;
  int32_t top_k = 0;
  int64_t payload_bytes = 0;
};
using HeaderBytes = std::array<uint8_t, kFrameHeaderBytes>;

HeaderBytes EncodeHeader(const FrameHeader& header);
// Checks magic, version, type, non-negative sizes, and that payload_bytes matches the type's
// layout and does not exceed max_payload_bytes.
absl::StatusOr<FrameHeader> DecodeHeader(const HeaderBytes& bytes, int64_t max_payload_bytes);

int64_t DispatchPayloadBytes(int64_t count, int64_t hidden, int64_t top_k);
int64_t CombinePayloadBytes(int64_t count, int64_t hidden);

// The handshake: the coordinator tells the worker its rank, the world size, and a session id;
// the worker echoes all three when it accepts.
struct HelloPayload {
  int32_t rank = 0;
  int32_t world_size = 0;
  uint64_t session = 0;
};
std::array<uint8_t, kHelloPayloadBytes> EncodeHello(const HelloPayload& hello);
HelloPayload DecodeHello(const std::array<uint8_t, kHelloPayloadBytes>& bytes);

}  // namespace dsv2::comm_tcp
