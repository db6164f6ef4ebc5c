#include "tests/fuzz/parser_targets.h"

#include <array>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>

#include "common/comm/tcp/frame.h"
#include "common/gguf.h"
#include "common/json_document.h"
#include "common/model_config.h"
#include "common/safetensors.h"
#include "coordinator/tokenizer/tokenizer.h"

namespace dsv2::fuzz {
namespace {

void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz: invariant violated: %s\n", what);
    std::abort();
  }
}

std::string_view View(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

}  // namespace

void Safetensors(const uint8_t* data, size_t size) {
  const std::string_view bytes = View(data, size);
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> f = SafetensorsFile::FromBytes(bytes, "fuzz");
  if (!f.ok()) {
    Check(f.status().code() == absl::StatusCode::kInvalidArgument, "errors are INVALID_ARGUMENT");
    Check(f.status().message().find("fuzz") != std::string_view::npos, "errors name the file");
    return;
  }
  for (const auto& [name, t] : (*f)->tensors()) {
    const auto* p = static_cast<const char*>(t.data);
    Check(p >= bytes.data() && t.nbytes >= 0 &&
              t.nbytes <= static_cast<int64_t>(bytes.data() + bytes.size() - p),
          "tensor data lies inside the file");
    if (t.dtype) Check(t.nbytes == t.numel() * DTypeSize(*t.dtype), "size matches shape");
    volatile char sink = 0;
    if (t.nbytes > 0) sink = p[t.nbytes - 1];  // touch the last byte: ASan sees a bad bound
    (void)sink;
  }
}

void Gguf(const uint8_t* data, size_t size) {
  const std::string_view bytes = View(data, size);
  absl::StatusOr<std::unique_ptr<GgufFile>> f = GgufFile::FromBytes(bytes, "fuzz");
  if (!f.ok()) {
    Check(f.status().code() == absl::StatusCode::kInvalidArgument, "errors are INVALID_ARGUMENT");
    Check(f.status().message().find("fuzz") != std::string_view::npos, "errors name the file");
    return;
  }
  for (const auto& [name, t] : (*f)->tensors()) {
    if (t.data == nullptr) continue;  // a type whose size this reader does not know
    const auto* p = static_cast<const char*>(t.data);
    Check(p >= bytes.data() && t.nbytes >= 0 &&
              t.nbytes <= static_cast<int64_t>(bytes.data() + bytes.size() - p),
          "tensor data lies inside the file");
    volatile char sink = 0;
    if (t.nbytes > 0) sink = static_cast<char>(sink ^ p[0] ^ p[t.nbytes - 1]);
  }
}

void ConfigJson(const uint8_t* data, size_t size) {
  absl::StatusOr<Json> json = ParseJson(View(data, size));
  if (!json.ok()) return;
  absl::StatusOr<ModelConfig> c = ParseModelConfig(*json);
  if (!c.ok()) return;
  // What the engine derives from an accepted config must be usable.
  Check(c->hidden_size > 0 && c->num_hidden_layers > 0 && c->vocab_size > 0, "positive sizes");
  Check(c->latent_cache_dim() > 0, "a latent cache row");
  const double scale = c->SoftmaxScale();
  Check(scale > 0 && scale < std::numeric_limits<double>::infinity(), "a finite softmax scale");
  for (int64_t l = 0; l < c->num_hidden_layers && l < 4; ++l) (void)c->IsMoeLayer(l);
}

void TokenizerJson(const uint8_t* data, size_t size) {
  absl::StatusOr<Json> json = ParseJson(View(data, size));
  if (!json.ok()) return;
  absl::StatusOr<std::unique_ptr<Tokenizer>> tok = Tokenizer::FromJson(*json, nullptr);
  if (!tok.ok()) return;
  absl::StatusOr<std::vector<int32_t>> ids = (*tok)->Encode("Hello, world! 123 \n\t\xc3\xa9", true);
  if (!ids.ok()) return;
  for (int32_t id : *ids) Check(id >= 0 && id < (*tok)->vocab_size(), "ids inside the vocabulary");
  (void)(*tok)->Decode(*ids, /*skip_special=*/false);
}

void TcpFrame(const uint8_t* data, size_t size) {
  if (size < comm_tcp::kFrameHeaderBytes) return;
  comm_tcp::HeaderBytes header;
  std::memcpy(header.data(), data, header.size());
  constexpr int64_t kLimit = 64 << 20;
  absl::StatusOr<comm_tcp::FrameHeader> h = comm_tcp::DecodeHeader(header, kLimit);
  if (!h.ok()) return;
  Check(h->payload_bytes >= 0 && h->payload_bytes <= kLimit, "payload within the limit");
  Check(comm_tcp::EncodeHeader(*h) == header, "an accepted header encodes to the same bytes");
  if (h->type == comm_tcp::FrameType::kHello &&
      size >= header.size() + comm_tcp::kHelloPayloadBytes) {
    std::array<uint8_t, comm_tcp::kHelloPayloadBytes> hello;
    std::memcpy(hello.data(), data + header.size(), hello.size());
    Check(comm_tcp::EncodeHello(comm_tcp::DecodeHello(hello)) == hello, "hello round-trips");
  }
}

Target FindTarget(std::string_view name) {
  if (name == "safetensors") return Safetensors;
  if (name == "gguf") return Gguf;
  if (name == "config_json") return ConfigJson;
  if (name == "tokenizer_json") return TokenizerJson;
  if (name == "tcp_frame") return TcpFrame;
  if (name == "generate_request") return GenerateRequest;
  if (name == "http_request") return HttpRequest;
  return nullptr;
}

}  // namespace dsv2::fuzz
