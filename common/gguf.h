// Zero-copy reader for GGUF files (ggml's model format, version 2 and 3), written from the
// format's public specification: a header, typed metadata key/values, a tensor directory, and
// the tensor data (aligned), mmap'ed read-only and used in place. A model split over files
// (NAME-00001-of-00003.gguf) is opened from its first file. Every error names the file and,
// where there is one, the key or tensor; nothing is read outside the file whatever its bytes say
// (fuzzed as the safetensors reader is).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/dtype.h"

namespace dsv2 {

enum class GgufValueType : uint32_t {
  kU8 = 0,
  kI8 = 1,
  kU16 = 2,
  kI16 = 3,
  kU32 = 4,
  kI32 = 5,
  kF32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kU64 = 10,
  kI64 = 11,
  kF64 = 12,
};

struct GgufValue {
  GgufValueType type = GgufValueType::kU8;
  GgufValueType array_type = GgufValueType::kU8;  // arrays: the element type
  int64_t i = 0;                     // integer and bool scalars (a u64 above 2^63 - 1 is refused)
  double f = 0.0;                    // float scalars
  std::string s;                     // string scalars
  std::vector<int64_t> ints;         // arrays of integers or bools
  std::vector<double> floats;        // arrays of floats
  std::vector<std::string> strings;  // arrays of strings

  bool is_integer() const;  // an integer or bool scalar
  bool is_float() const;
};

struct GgufTensor {
  std::string name;
  std::vector<int64_t> dims;  // ggml order: dims[0] is the contiguous (innermost) one
  uint32_t ggml_type = 0;
  std::optional<DType> dtype;  // nullopt: a type the engine does not read (named in errors)
  const void* data = nullptr;
  int64_t nbytes = 0;
  std::string file;

  std::string ShapeString() const;  // "[2048, 10944]" in ggml order
};

// The name of a ggml tensor type ("Q4_K", "IQ2_XS", ...; "type 77" when unknown).
std::string GgmlTypeName(uint32_t type);

class GgufFile {
 public:
  static absl::StatusOr<std::unique_ptr<GgufFile>> Open(const std::string& path);
  // The same parse over bytes the caller keeps alive (fuzzing, tests); `name` stands in for
  // the path.
  static absl::StatusOr<std::unique_ptr<GgufFile>> FromBytes(std::string_view bytes,
                                                             const std::string& name);
  ~GgufFile();
  GgufFile(const GgufFile&) = delete;
  GgufFile& operator=(const GgufFile&) = delete;

  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  const std::map<std::string, GgufValue>& metadata() const { return metadata_; }
  const std::map<std::string, GgufTensor>& tensors() const { return tensors_; }
  int64_t file_size() const { return size_; }
  const GgufValue* Find(const std::string& key) const;

 private:
  GgufFile() = default;
  absl::Status Parse();

  std::string path_;
  void* map_ = nullptr;
  const uint8_t* bytes_ = nullptr;
  int64_t size_ = 0;
  uint32_t version_ = 0;
  std::map<std::string, GgufValue> metadata_;
  std::map<std::string, GgufTensor> tensors_;
};

// A model in one GGUF file or split over several: the first file's metadata, every file's
// tensors.
class GgufModel {
 public:
  // `path`: a .gguf file; for a split model, its first part (-00001-of-0000N.gguf).
  static absl::StatusOr<std::unique_ptr<GgufModel>> Open(const std::string& path);

  const GgufFile& first() const { return *files_.front(); }
  const std::vector<std::unique_ptr<GgufFile>>& files() const { return files_; }
  const GgufTensor* FindTensor(const std::string& name) const;
  size_t num_tensors() const { return tensors_.size(); }
  int64_t total_bytes() const;

  // Metadata of the first file, typed; errors name the key and the file.
  absl::StatusOr<int64_t> Int(const std::string& key) const;
  std::optional<int64_t> OptionalInt(const std::string& key) const;
  absl::StatusOr<double> Float(const std::string& key) const;
  std::optional<double> OptionalFloat(const std::string& key) const;
  absl::StatusOr<std::string> String(const std::string& key) const;

 private:
  std::vector<std::unique_ptr<GgufFile>> files_;
  std::map<std::string, const GgufTensor*> tensors_;
};

// True when `path` names a GGUF file (by its .gguf suffix).
bool IsGgufPath(const std::string& path);
// Where a model's tokenizer.json lives: the checkpoint directory, or a GGUF file's directory.
std::string TokenizerDirOf(const std::string& model);

}  // namespace dsv2
