// Zero-copy reader for safetensors checkpoints: one file, or shards listed by
// model.safetensors.index.json. Files are mmap'ed read-only; tensor data is never copied.
// Every error names the file and, where there is one, the tensor.
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

struct TensorInfo {
  std::string name;
  std::string dtype_name;      // as written in the header ("BF16", "F8_E4M3", ...)
  std::optional<DType> dtype;  // nullopt for element types the engine does not read
  std::vector<int64_t> shape;
  const void* data = nullptr;
  int64_t nbytes = 0;
  std::string file;  // path of the file holding it

  int64_t numel() const;
  std::string ShapeString() const;  // "[3072, 2048]"
};

class SafetensorsFile {
 public:
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);
  // The same parse over bytes the caller owns (and keeps alive as long as the result): fuzzing
  // and tests. `name` stands in for the path in errors.
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> FromBytes(std::string_view bytes,
                                                                    const std::string& name);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const std::map<std::string, TensorInfo>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  int64_t file_size() const { return size_; }

 private:
  SafetensorsFile() = default;
  absl::Status ParseHeader();

  std::string path_;
  void* map_ = nullptr;             // the mmap of Open (null for FromBytes)
  const uint8_t* bytes_ = nullptr;  // the whole file
  int64_t size_ = 0;
  std::map<std::string, TensorInfo> tensors_;
  std::map<std::string, std::string> metadata_;
};

// All tensors of a checkpoint directory (or of one .safetensors file).
class Checkpoint {
 public:
  // `path`: a directory holding model.safetensors.index.json or *.safetensors, or one file.
  static absl::StatusOr<std::unique_ptr<Checkpoint>> Open(const std::string& path);

  const TensorInfo* Find(const std::string& name) const;
  const std::vector<std::unique_ptr<SafetensorsFile>>& files() const { return files_; }
  int64_t total_bytes() const;
  size_t num_tensors() const { return by_name_.size(); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, const TensorInfo*> by_name_;
};

}  // namespace dsv2
