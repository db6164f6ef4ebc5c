#include "common/checkpoint_fingerprint.h"

#include <algorithm>
#include <cstdint>
#include <map>

#include "absl/strings/str_format.h"
#include "common/synthetic_checkpoint.h"

namespace dsv2 {
namespace {

// FNV-1a, 64 bit.
class Fnv64 {
 public:
  void Add(const void* data, size_t n) {
    const auto* p = static_cast<const uint8_t*>(data);
    for (size_t i = 0; i < n; ++i) {
      h_ ^= p[i];
      h_ *= 0x100000001b3ull;
    }
  }
  void Add(const std::string& s) { Add(s.data(), s.size() + 1); }  // with the terminator
  uint64_t value() const { return h_; }

 private:
  uint64_t h_ = 0xcbf29ce484222325ull;
};

}  // namespace

std::string CheckpointFingerprint(const ModelConfig& config, const Checkpoint& ckpt) {
  Fnv64 h;
  h.Add(ModelConfigToJson(config));  // the parsed values, not the file's formatting
  std::map<std::string, const TensorInfo*> sorted;
  for (const auto& file : ckpt.files()) {
    for (const auto& [name, t] : file->tensors()) sorted[name] = &t;
  }
  constexpr int64_t kSample = 64;
  for (const auto& [name, t] : sorted) {
    h.Add(name);
    h.Add(t->dtype_name);
    for (int64_t d : t->shape) h.Add(&d, sizeof(d));
    const auto* data = static_cast<const uint8_t*>(t->data);
    const int64_t n = std::min(kSample, t->nbytes);
    h.Add(data, n);
    h.Add(data + t->nbytes - n, n);
  }
  return absl::StrFormat("%016x", h.value());
}

std::string GgufFingerprint(const ModelConfig& config, const GgufModel& gguf) {
  Fnv64 h;
  h.Add(ModelConfigToJson(config));
  std::map<std::string, const GgufTensor*> sorted;
  for (const auto& file : gguf.files()) {
    for (const auto& [name, t] : file->tensors()) sorted[name] = &t;
  }
  constexpr int64_t kSample = 64;
  for (const auto& [name, t] : sorted) {
    h.Add(name);
    h.Add(&t->ggml_type, sizeof(t->ggml_type));
    for (int64_t d : t->dims) h.Add(&d, sizeof(d));
    if (t->data == nullptr) continue;
    const auto* data = static_cast<const uint8_t*>(t->data);
    const int64_t n = std::min(kSample, t->nbytes);
    h.Add(data, n);
    h.Add(data + t->nbytes - n, n);
  }
  return absl::StrFormat("%016x", h.value());
}

}  // namespace dsv2
