#include "common/gguf_writer.h"

#include <cstdio>
#include <cstring>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "kernels/check.h"

namespace dsv2 {
namespace {

constexpr int64_t kAlignment = 32;

template <typename T>
void Put(std::string& out, T v) {
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));
  out.append(b, sizeof(T));
}

void PutString(std::string& out, const std::string& s) {
  Put<uint64_t>(out, s.size());
  out += s;
}

void PutKey(std::string& out, const std::string& key, GgufValueType t) {
  PutString(out, key);
  Put<uint32_t>(out, static_cast<uint32_t>(t));
}

}  // namespace

uint32_t GgmlTypeOf(DType t) {
  switch (t) {
    case DType::kF32:
      return 0;
    case DType::kF16:
      return 1;
    case DType::kQ4_0:
      return 2;
    case DType::kQ5_0:
      return 6;
    case DType::kQ8_0:
      return 8;
    case DType::kQ4_K:
      return 12;
    case DType::kQ5_K:
      return 13;
    case DType::kQ6_K:
      return 14;
    case DType::kIQ4_NL:
      return 20;
    case DType::kBF16:
      return 30;
    default:
      DSV2_CHECK_MSG(false, "GgmlTypeOf: no ggml type for this dtype");
  }
  return 0;
}

void GgufWriter::AddString(const std::string& key, const std::string& v) {
  PutKey(kv_, key, GgufValueType::kString);
  PutString(kv_, v);
  ++n_kv_;
}

void GgufWriter::AddU32(const std::string& key, uint32_t v) {
  PutKey(kv_, key, GgufValueType::kU32);
  Put(kv_, v);
  ++n_kv_;
}

void GgufWriter::AddI32(const std::string& key, int32_t v) {
  PutKey(kv_, key, GgufValueType::kI32);
  Put(kv_, v);
  ++n_kv_;
}

void GgufWriter::AddF32(const std::string& key, float v) {
  PutKey(kv_, key, GgufValueType::kF32);
  Put(kv_, v);
  ++n_kv_;
}

void GgufWriter::AddBool(const std::string& key, bool v) {
  PutKey(kv_, key, GgufValueType::kBool);
  Put<uint8_t>(kv_, v ? 1 : 0);
  ++n_kv_;
}

void GgufWriter::AddStrings(const std::string& key, const std::vector<std::string>& v) {
  PutKey(kv_, key, GgufValueType::kArray);
  Put<uint32_t>(kv_, static_cast<uint32_t>(GgufValueType::kString));
  Put<uint64_t>(kv_, v.size());
  for (const std::string& s : v) PutString(kv_, s);
  ++n_kv_;
}

void GgufWriter::AddI32s(const std::string& key, const std::vector<int32_t>& v) {
  PutKey(kv_, key, GgufValueType::kArray);
  Put<uint32_t>(kv_, static_cast<uint32_t>(GgufValueType::kI32));
  Put<uint64_t>(kv_, v.size());
  for (int32_t x : v) Put(kv_, x);
  ++n_kv_;
}

void GgufWriter::AddTensor(const std::string& name, std::vector<int64_t> dims, uint32_t ggml_type,
                           std::vector<uint8_t> bytes) {
  tensors_.push_back({name, std::move(dims), ggml_type, std::move(bytes)});
}

// The header, metadata and tensor directory, padded to the alignment; each tensor's offset.
std::string GgufWriter::Header(std::vector<int64_t>* offsets) const {
  std::string out;
  Put<uint32_t>(out, 0x46554747);  // "GGUF"
  Put<uint32_t>(out, 3);
  Put<int64_t>(out, static_cast<int64_t>(tensors_.size()));
  Put<int64_t>(out, n_kv_);
  out += kv_;
  int64_t offset = 0;
  for (const Tensor& t : tensors_) {
    PutString(out, t.name);
    Put<uint32_t>(out, static_cast<uint32_t>(t.dims.size()));
    for (int64_t d : t.dims) Put<int64_t>(out, d);
    Put<uint32_t>(out, t.type);
    Put<uint64_t>(out, static_cast<uint64_t>(offset));
    offsets->push_back(offset);
    offset += (static_cast<int64_t>(t.bytes.size()) + kAlignment - 1) / kAlignment * kAlignment;
  }
  out.resize((out.size() + kAlignment - 1) / kAlignment * kAlignment, '\0');
  return out;
}

std::string GgufWriter::Serialize() const {
  std::vector<int64_t> offsets;
  std::string out = Header(&offsets);
  for (const Tensor& t : tensors_) {
    out.append(reinterpret_cast<const char*>(t.bytes.data()), t.bytes.size());
    out.resize((out.size() + kAlignment - 1) / kAlignment * kAlignment, '\0');
  }
  return out;
}

absl::Status GgufWriter::Write(const std::string& path) const {
  const std::string tmp = path + ".part";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) return absl::PermissionDeniedError(absl::StrCat("cannot write ", tmp));
    std::vector<int64_t> offsets;
    const std::string header = Header(&offsets);
    f.write(header.data(), static_cast<std::streamsize>(header.size()));
    const char zeros[kAlignment] = {};
    for (const Tensor& t : tensors_) {
      f.write(reinterpret_cast<const char*>(t.bytes.data()),
              static_cast<std::streamsize>(t.bytes.size()));
      const int64_t pad =
          (kAlignment - static_cast<int64_t>(t.bytes.size()) % kAlignment) % kAlignment;
      f.write(zeros, static_cast<std::streamsize>(pad));
    }
    if (!f) return absl::ResourceExhaustedError(absl::StrCat("writing ", tmp, " failed"));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::InternalError(absl::StrCat("cannot rename ", tmp, " to ", path));
  }
  return absl::OkStatus();
}

}  // namespace dsv2
