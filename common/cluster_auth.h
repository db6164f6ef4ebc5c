// The cluster's shared secret and the challenge–response built on it, so that a process without
// the secret can neither configure a worker nor run its RPCs (issue 12). HMAC-SHA-256 and the
// random nonces come from OpenSSL's libcrypto; nothing here is hand-written cryptography.
//
//   coordinator                                  worker
//   GetChallenge()                       ──►     nonce = 32 fresh random bytes (kept 60 s)
//   mac = HMAC(secret, method ‖ nonce ‖ request)
//   Configure(request) + metadata {nonce, mac} ──► the nonce must be one it issued, unused
//                                                  (then it is spent: a replay fails), and the
//                                                  mac must match (constant-time compare)
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace dsv2 {

// The context of the data plane's handshake MAC (common/comm/tcp): the worker's nonce and the
// coordinator's hello bytes are what it covers.
inline constexpr char kDataPlaneAuthContext[] = "dsv2 data-plane hello";

// gRPC metadata keys (binary: "-bin") carrying the nonce and the MAC of an authenticated call.
inline constexpr char kAuthNonceKey[] = "dsv2-auth-nonce-bin";
inline constexpr char kAuthMacKey[] = "dsv2-auth-mac-bin";

class ClusterSecret {
 public:
  ClusterSecret() = default;  // none: authentication off
  // The secret of --cluster-secret-file (the file's bytes, a trailing newline dropped), else of
  // $DSV2_CLUSTER_SECRET (what a Kubernetes Secret fills), else none. At least 16 bytes.
  static absl::StatusOr<ClusterSecret> FromFileOrEnv(const std::string& file);
  static absl::StatusOr<ClusterSecret> FromBytes(std::string secret);

  bool enabled() const { return !secret_.empty(); }
  // HMAC-SHA-256(secret, context ‖ 0 ‖ nonce ‖ message): 32 bytes.
  std::string Mac(std::string_view context, std::string_view nonce, std::string_view message) const;
  // Whether `mac` is Mac(context, nonce, message), compared in constant time.
  bool Verify(std::string_view context, std::string_view nonce, std::string_view message,
              std::string_view mac) const;

 private:
  std::string secret_;
};

// 32 bytes from OpenSSL's CSPRNG.
std::string FreshNonce();

// The nonces a worker handed out: each may be spent once, within `ttl`.
class NonceBook {
 public:
  explicit NonceBook(std::chrono::seconds ttl = std::chrono::seconds(60)) : ttl_(ttl) {}
  std::string Issue();
  // OK and forgets it, or UNAUTHENTICATED saying why (unknown, already used or expired).
  absl::Status Spend(const std::string& nonce);

 private:
  std::chrono::seconds ttl_;
  std::mutex mu_;
  std::map<std::string, std::chrono::steady_clock::time_point> issued_;
};

// True for 127.0.0.0/8, ::1 and "localhost": plaintext without a secret is fine there only.
bool IsLoopbackHost(std::string_view host);

}  // namespace dsv2
