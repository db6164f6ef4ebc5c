#include "common/cluster_auth.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <cstdlib>
#include <fstream>
#include <iterator>

#include "absl/strings/str_cat.h"

namespace dsv2 {

absl::StatusOr<ClusterSecret> ClusterSecret::FromBytes(std::string secret) {
  while (!secret.empty() && (secret.back() == '\n' || secret.back() == '\r')) secret.pop_back();
  if (secret.size() < 16) {
    return absl::InvalidArgumentError(absl::StrCat("the cluster secret has ", secret.size(),
                                                   " bytes; use at least 16 (e.g. `openssl rand "
                                                   "-hex 32`)"));
  }
  ClusterSecret s;
  s.secret_ = std::move(secret);
  return s;
}

absl::StatusOr<ClusterSecret> ClusterSecret::FromFileOrEnv(const std::string& file) {
  if (!file.empty()) {
    std::ifstream in(file, std::ios::binary);
    if (!in) return absl::NotFoundError(absl::StrCat("--cluster-secret-file: cannot read ", file));
    absl::StatusOr<ClusterSecret> s = FromBytes(
        std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>()));
    if (!s.ok())
      return absl::InvalidArgumentError(
          absl::StrCat("--cluster-secret-file ", file, ": ", s.status().message()));
    return s;
  }
  if (const char* env = std::getenv("DSV2_CLUSTER_SECRET"); env != nullptr && *env != '\0') {
    absl::StatusOr<ClusterSecret> s = FromBytes(env);
    if (!s.ok())
      return absl::InvalidArgumentError(
          absl::StrCat("DSV2_CLUSTER_SECRET: ", s.status().message()));
    return s;
  }
  return ClusterSecret();
}

std::string ClusterSecret::Mac(std::string_view context, std::string_view nonce,
                               std::string_view message) const {
  std::string input;
  input.reserve(context.size() + 1 + nonce.size() + message.size());
  input.append(context).push_back('\0');
  input.append(nonce).append(message);
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), secret_.data(), static_cast<int>(secret_.size()),
       reinterpret_cast<const unsigned char*>(input.data()), input.size(), out, &len);
  return std::string(reinterpret_cast<const char*>(out), len);
}

bool ClusterSecret::Verify(std::string_view context, std::string_view nonce,
                           std::string_view message, std::string_view mac) const {
  const std::string want = Mac(context, nonce, message);
  return mac.size() == want.size() && CRYPTO_memcmp(mac.data(), want.data(), want.size()) == 0;
}

std::string FreshNonce() {
  std::string nonce(32, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(nonce.data()), static_cast<int>(nonce.size())) !=
      1) {
    std::abort();  // no entropy: nothing safe to hand out
  }
  return nonce;
}

std::string NonceBook::Issue() {
  std::string nonce = FreshNonce();
  const auto now = std::chrono::steady_clock::now();
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = issued_.begin(); it != issued_.end();) {  // drop the expired ones
    it = now - it->second > ttl_ ? issued_.erase(it) : std::next(it);
  }
  if (issued_.size() < 4096) issued_[nonce] = now;  // bounded: a flood cannot grow it
  return nonce;
}

absl::Status NonceBook::Spend(const std::string& nonce) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = issued_.find(nonce);
  if (it == issued_.end()) {
    return absl::UnauthenticatedError("unknown or already used challenge nonce (a replay?)");
  }
  const bool expired = std::chrono::steady_clock::now() - it->second > ttl_;
  issued_.erase(it);
  if (expired) return absl::UnauthenticatedError("the challenge nonce expired");
  return absl::OkStatus();
}

bool IsLoopbackHost(std::string_view host) {
  return host == "::1" || host == "localhost" || host.substr(0, 4) == "127.";
}

}  // namespace dsv2
