// gRPC credentials from the TLS flags, shared by every program: the servers (dsv2-coordinator's
// API, dsv2-worker's control port: --tls-cert, --tls-key, --tls-client-ca) and the clients
// (dsv2-cli --tls-ca/--tls-cert/--tls-key, the coordinator towards its workers:
// --worker-tls-ca/--worker-tls-cert/--worker-tls-key). No files: plaintext. Errors name the flag
// and the file (common/pem_file.h, in dsv2_cluster_auth). Header-only: its users link gRPC
// already, and dsv2_cluster_auth.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "common/pem_file.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/security/server_credentials.h"

namespace dsv2 {

struct TlsServerFiles {
  std::string cert;                // PEM certificate chain; empty: plaintext
  std::string key;                 // its PEM private key
  std::string client_ca;           // set: clients must present a certificate it signed (mutual TLS)
  std::string flag_prefix = "--";  // how the flags are spelled in errors ("--tls-cert", ...)
};

inline absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const TlsServerFiles& f) {
  const std::string cert_flag = absl::StrCat(f.flag_prefix, "tls-cert");
  const std::string key_flag = absl::StrCat(f.flag_prefix, "tls-key");
  const std::string ca_flag = absl::StrCat(f.flag_prefix, "tls-client-ca");
  if (f.cert.empty() != f.key.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(cert_flag, " and ", key_flag, " go together"));
  }
  if (!f.client_ca.empty() && f.cert.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(ca_flag, " needs ", cert_flag, " and ", key_flag));
  }
  if (f.cert.empty()) return grpc::InsecureServerCredentials();
  grpc::SslServerCredentialsOptions ssl;
  absl::StatusOr<std::string> cert = ReadPemFile(f.cert, cert_flag.c_str());
  if (!cert.ok()) return cert.status();
  absl::StatusOr<std::string> key = ReadPemFile(f.key, key_flag.c_str(), PemKind::kPrivateKey);
  if (!key.ok()) return key.status();
  if (absl::Status s = CheckKeyOfCertificate(*cert, f.cert, *key, f.key, f.flag_prefix); !s.ok()) {
    return s;
  }
  ssl.pem_key_cert_pairs.push_back({*std::move(key), *std::move(cert)});
  if (!f.client_ca.empty()) {
    absl::StatusOr<std::string> ca = ReadPemFile(f.client_ca, ca_flag.c_str());
    if (!ca.ok()) return ca.status();
    ssl.pem_root_certs = *std::move(ca);
    ssl.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  return grpc::SslServerCredentials(ssl);
}

struct TlsClientFiles {
  std::string ca;    // PEM CA that signed the server's certificate; empty: plaintext
  std::string cert;  // for mutual TLS: this client's certificate chain and key
  std::string key;
  std::string flag_prefix = "--";  // "--" (dsv2-cli) or "--worker-" (the coordinator)
};

inline absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeChannelCredentials(
    const TlsClientFiles& f) {
  const std::string ca_flag = absl::StrCat(f.flag_prefix, "tls-ca");
  const std::string cert_flag = absl::StrCat(f.flag_prefix, "tls-cert");
  const std::string key_flag = absl::StrCat(f.flag_prefix, "tls-key");
  if (f.cert.empty() != f.key.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(cert_flag, " and ", key_flag, " go together"));
  }
  if (f.ca.empty()) {
    if (!f.cert.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          cert_flag, " needs ", ca_flag, " (the CA that signed the server's certificate)"));
    }
    return grpc::InsecureChannelCredentials();
  }
  grpc::SslCredentialsOptions ssl;
  absl::StatusOr<std::string> roots = ReadPemFile(f.ca, ca_flag.c_str());
  if (!roots.ok()) return roots.status();
  ssl.pem_root_certs = *std::move(roots);
  if (!f.cert.empty()) {
    absl::StatusOr<std::string> cert = ReadPemFile(f.cert, cert_flag.c_str());
    if (!cert.ok()) return cert.status();
    absl::StatusOr<std::string> key = ReadPemFile(f.key, key_flag.c_str(), PemKind::kPrivateKey);
    if (!key.ok()) return key.status();
    if (absl::Status s = CheckKeyOfCertificate(*cert, f.cert, *key, f.key, f.flag_prefix);
        !s.ok()) {
      return s;
    }
    ssl.pem_cert_chain = *std::move(cert);
    ssl.pem_private_key = *std::move(key);
  }
  return grpc::SslCredentials(ssl);
}

}  // namespace dsv2
