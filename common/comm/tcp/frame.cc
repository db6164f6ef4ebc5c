#include "common/comm/tcp/frame.h"

#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace dsv2::comm_tcp {
namespace {

template <typename T>
void Put(uint8_t* out, T value) {
  std::memcpy(out, &value, sizeof(T));  // little-endian host (static_assert in frame.h)
}

template <typename T>
T Get(const uint8_t* in) {
  T value;
  std::memcpy(&value, in, sizeof(T));
  return value;
}

bool KnownType(uint16_t type) { return type >= 1 && type <= 8; }

}  // namespace

const char* FrameTypeName(FrameType type) {
  switch (type) {
    case FrameType::kHello:
      return "hello";
    case FrameType::kHelloAck:
      return "hello-ack";
    case FrameType::kHelloReject:
      return "hello-reject";
    case FrameType::kDispatch:
      return "dispatch";
    case FrameType::kCombine:
      return "combine";
    case FrameType::kDrain:
      return "drain";
    case FrameType::kHelloChallenge:
      return "hello-challenge";
    case FrameType::kHelloProof:
      return "hello-proof";
  }
  return "unknown";
}

HeaderBytes EncodeHeader(const FrameHeader& h) {
  HeaderBytes b{};
  Put<uint32_t>(&b[0], kFrameMagic);
  Put<uint16_t>(&b[4], kFrameVersion);
  Put<uint16_t>(&b[6], static_cast<uint16_t>(h.type));
  Put<int32_t>(&b[8], h.layer);
  Put<int32_t>(&b[12], h.sender_rank);
  Put<int64_t>(&b[16], h.count);
  Put<int32_t>(&b[24], h.hidden);
  Put<int32_t>(&b[28], h.top_k);
  Put<int64_t>(&b[32], h.payload_bytes);
  return b;
}

int64_t DispatchPayloadBytes(int64_t count, int64_t hidden, int64_t top_k) {
  return count * (hidden * 4 + top_k * 8);
}

int64_t CombinePayloadBytes(int64_t count, int64_t hidden) { return count * hidden * 4; }

absl::StatusOr<FrameHeader> DecodeHeader(const HeaderBytes& b, int64_t max_payload_bytes) {
  const uint32_t magic = Get<uint32_t>(&b[0]);
  if (magic != kFrameMagic) {
    return absl::DataLossError(
        absl::StrFormat("bad frame magic 0x%08x (expected 0x%08x): not a dsv2 expert-parallel peer",
                        magic, kFrameMagic));
  }
  const uint16_t version = Get<uint16_t>(&b[4]);
  if (version != kFrameVersion) {
    return absl::FailedPreconditionError(
        absl::StrCat("frame version ", version, ", this build speaks ", kFrameVersion));
  }
  const uint16_t type = Get<uint16_t>(&b[6]);
  if (!KnownType(type)) return absl::DataLossError(absl::StrCat("unknown frame type ", type));
  FrameHeader h;
  h.type = static_cast<FrameType>(type);
  h.layer = Get<int32_t>(&b[8]);
  h.sender_rank = Get<int32_t>(&b[12]);
  h.count = Get<int64_t>(&b[16]);
  h.hidden = Get<int32_t>(&b[24]);
  h.top_k = Get<int32_t>(&b[28]);
  h.payload_bytes = Get<int64_t>(&b[32]);
  const char* name = FrameTypeName(h.type);
  if (h.count < 0 || h.hidden < 0 || h.top_k < 0 || h.payload_bytes < 0) {
    return absl::DataLossError(absl::StrCat(name, " frame with a negative size: count ", h.count,
                                            ", hidden ", h.hidden, ", top_k ", h.top_k,
                                            ", payload ", h.payload_bytes));
  }
  if (h.payload_bytes > max_payload_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat(
        name, " frame of ", h.payload_bytes, " bytes exceeds the limit of ", max_payload_bytes));
  }
  // Row sizes are bounded by the int32 fields; the count is bounded by the payload limit
  // before the multiplication, so the expected size cannot overflow.
  int64_t expected = 0;
  switch (h.type) {
    case FrameType::kDispatch:
    case FrameType::kCombine: {
      const int64_t row = h.type == FrameType::kDispatch
                              ? DispatchPayloadBytes(1, h.hidden, h.top_k)
                              : CombinePayloadBytes(1, h.hidden);
      if (h.count > 0 && (row == 0 || h.count > max_payload_bytes / row)) {
        return absl::DataLossError(absl::StrCat(name, " frame of ", h.count,
                                                " tokens with row size ", row, " is invalid"));
      }
      expected = h.count * row;
      break;
    }
    case FrameType::kHello:
    case FrameType::kHelloAck:
      expected = kHelloPayloadBytes;
      break;
    case FrameType::kHelloReject:
      expected = h.payload_bytes <= kMaxRejectBytes ? h.payload_bytes : -1;
      break;
    case FrameType::kDrain:
      expected = 0;
      break;
    case FrameType::kHelloChallenge:
    case FrameType::kHelloProof:
      expected = kAuthPayloadBytes;
      break;
  }
  if (h.payload_bytes != expected) {
    return absl::DataLossError(absl::StrCat(name, " frame announces ", h.payload_bytes,
                                            " payload bytes, its layout needs ", expected));
  }
  return h;
}

std::array<uint8_t, kHelloPayloadBytes> EncodeHello(const HelloPayload& hello) {
  std::array<uint8_t, kHelloPayloadBytes> b{};
  Put<int32_t>(&b[0], hello.rank);
  Put<int32_t>(&b[4], hello.world_size);
  Put<uint64_t>(&b[8], hello.session);
  return b;
}

HelloPayload DecodeHello(const std::array<uint8_t, kHelloPayloadBytes>& b) {
  return {Get<int32_t>(&b[0]), Get<int32_t>(&b[4]), Get<uint64_t>(&b[8])};
}

}  // namespace dsv2::comm_tcp
