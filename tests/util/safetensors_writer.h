// Test helper: writes safetensors files (to build broken checkpoints on purpose).
#pragma once

#include <cstdint>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/safetensors.h"

namespace dsv2::testing {

struct TensorToWrite {
  std::string name;
  std::string dtype;  // "BF16", "F32", ...
  std::vector<int64_t> shape;
  std::string bytes;
};

inline std::string SafetensorsBytes(const std::vector<TensorToWrite>& tensors,
                                    const std::map<std::string, std::string>& metadata = {}) {
  std::string header = "{";
  std::string data;
  if (!metadata.empty()) {
    header += "\"__metadata__\":{";
    bool first = true;
    for (const auto& [k, v] : metadata) {
      header += absl::StrCat(first ? "" : ",", "\"", k, "\":\"", v, "\"");
      first = false;
    }
    header += "},";
  }
  for (size_t i = 0; i < tensors.size(); ++i) {
    const TensorToWrite& t = tensors[i];
    header += absl::StrCat(i ? "," : "", "\"", t.name, "\":{\"dtype\":\"", t.dtype,
                           "\",\"shape\":[", absl::StrJoin(t.shape, ","), "],\"data_offsets\":[",
                           data.size(), ",", data.size() + t.bytes.size(), "]}");
    data += t.bytes;
  }
  header += "}";
  std::string out(8, '\0');
  uint64_t len = header.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((len >> (8 * i)) & 0xff);
  return out + header + data;
}

inline void WriteFile(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// All tensors of an opened file, ready to be written again (optionally changed).
inline std::vector<TensorToWrite> CopyTensors(const SafetensorsFile& file) {
  std::vector<TensorToWrite> out;
  for (const auto& [name, t] : file.tensors()) {
    out.push_back({name, t.dtype_name, t.shape,
                   std::string(static_cast<const char*>(t.data), static_cast<size_t>(t.nbytes))});
  }
  return out;
}

}  // namespace dsv2::testing
