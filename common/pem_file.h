// Reading the PEM files of the TLS flags (--tls-cert, --tls-key, --tls-client-ca, --tls-ca):
// errors name the flag and the file, and a file that holds no PEM certificate (or private key)
// OpenSSL can read is refused here rather than by gRPC's own log lines and an opaque failure to
// listen or connect later.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace dsv2 {

enum class PemKind { kCertificates, kPrivateKey };

// The file's contents when it holds at least one readable block of `kind`.
absl::StatusOr<std::string> ReadPemFile(const std::string& path, const char* flag,
                                        PemKind kind = PemKind::kCertificates);

// INVALID_ARGUMENT unless `key_pem` (read from --tls-key) is the private key of the first
// certificate of `cert_pem` (--tls-cert); both already read by ReadPemFile. `flag_prefix`
// spells the flags ("--" or "--worker-").
absl::Status CheckKeyOfCertificate(const std::string& cert_pem, const std::string& cert_path,
                                   const std::string& key_pem, const std::string& key_path,
                                   const std::string& flag_prefix);

}  // namespace dsv2
