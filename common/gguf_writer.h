// Writes GGUF files (version 3) as the specification lays them out: header, metadata, tensor
// directory, tensor data aligned to general.alignment (32). Tensors are given as bytes already
// in their ggml type's layout (kernels/quant_blocks.h for the block formats). Used by
// dsv2-quantize and by tests that build GGUF files.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "common/gguf.h"

namespace dsv2 {

class GgufWriter {
 public:
  void AddString(const std::string& key, const std::string& v);
  void AddU32(const std::string& key, uint32_t v);
  void AddI32(const std::string& key, int32_t v);
  void AddF32(const std::string& key, float v);
  void AddBool(const std::string& key, bool v);
  void AddStrings(const std::string& key, const std::vector<std::string>& v);
  void AddI32s(const std::string& key, const std::vector<int32_t>& v);
  // A tensor: `dims` in ggml order (innermost first), `bytes` its data.
  void AddTensor(const std::string& name, std::vector<int64_t> dims, uint32_t ggml_type,
                 std::vector<uint8_t> bytes);

  // The whole file as bytes.
  std::string Serialize() const;
  // Serialize() written to `path` (through a temporary file renamed at the end, so a reader
  // never sees half a file); errors name the path.
  absl::Status Write(const std::string& path) const;

 private:
  std::string Header(std::vector<int64_t>* offsets) const;

  struct Tensor {
    std::string name;
    std::vector<int64_t> dims;
    uint32_t type;
    std::vector<uint8_t> bytes;
  };
  std::string kv_;  // serialized key/value pairs
  int64_t n_kv_ = 0;
  std::vector<Tensor> tensors_;
};

// The ggml type id of a DType (F32, F16, BF16 and the block formats).
uint32_t GgmlTypeOf(DType t);

}  // namespace dsv2
