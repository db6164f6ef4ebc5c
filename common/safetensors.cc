#include "common/safetensors.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/json_document.h"
#include "common/mapped_pages.h"
#include "common/status_macros.h"

namespace dsv2 {

namespace fs = std::filesystem;

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string TensorInfo::ShapeString() const {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

namespace {

std::optional<DType> ParseDType(const std::string& s) {
  if (s == "F32") return DType::kF32;
  if (s == "F16") return DType::kF16;
  if (s == "BF16") return DType::kBF16;
  if (s == "I64") return DType::kI64;
  if (s == "I32") return DType::kI32;
  if (s == "U8") return DType::kU8;
  return std::nullopt;
}

// Byte sizes of element types the engine does not compute with but must still bounds-check.
int64_t OtherDTypeSize(const std::string& s) {
  if (s == "F64" || s == "U64") return 8;
  if (s == "U32") return 4;
  if (s == "I16" || s == "U16") return 2;
  if (s == "I8" || s == "BOOL" || s == "F8_E4M3" || s == "F8_E5M2") return 1;
  return 0;
}

constexpr int64_t kMaxHeaderBytes = 100 << 20;  // as the reference implementation

}  // namespace

SafetensorsFile::~SafetensorsFile() {
  if (map_ != nullptr) munmap(map_, static_cast<size_t>(size_));
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  std::unique_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = path;
  DSV2_ASSIGN_OR_RETURN(const MappedFile m, MapFileReadOnly(path, 8));
  f->size_ = m.size;
  if (m.map == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": truncated file (", f->size_,
                                                   " bytes; a safetensors file starts "
                                                   "with an 8-byte header length)"));
  }
  f->map_ = m.map;
  f->bytes_ = static_cast<const uint8_t*>(m.map);
  DSV2_RETURN_IF_ERROR(f->ParseHeader());
  return f;
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::FromBytes(
    std::string_view bytes, const std::string& name) {
  std::unique_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = name;
  f->size_ = static_cast<int64_t>(bytes.size());
  if (f->size_ < 8) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": truncated file (", f->size_,
                                                   " bytes; a safetensors file starts "
                                                   "with an 8-byte header length)"));
  }
  f->bytes_ = reinterpret_cast<const uint8_t*>(bytes.data());
  DSV2_RETURN_IF_ERROR(f->ParseHeader());
  return f;
}

absl::Status SafetensorsFile::ParseHeader() {
  const uint8_t* bytes = bytes_;
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | bytes[i];
  auto corrupt = [&](absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat(path_, ": corrupt safetensors header: ", what));
  };
  if (header_len > static_cast<uint64_t>(kMaxHeaderBytes)) {
    return corrupt(absl::StrCat("header length ", header_len, " is implausible"));
  }
  if (static_cast<int64_t>(header_len) > size_ - 8) {
    return absl::InvalidArgumentError(absl::StrCat(path_, ": truncated file: the header says ",
                                                   header_len, " bytes, the file has ", size_ - 8,
                                                   " after the length"));
  }
  const std::string_view text(reinterpret_cast<const char*>(bytes + 8), header_len);
  absl::StatusOr<Json> header = ParseJson(text);
  if (!header.ok()) return corrupt(header.status().message());
  if (!header->is_object()) return corrupt("not a JSON object");

  const int64_t data_start = 8 + static_cast<int64_t>(header_len);
  const int64_t data_size = size_ - data_start;
  for (const auto& item : header->items()) {
    // Not a structured binding: clang 14 (the fuzz build) cannot capture one in `bad` below.
    const std::string& name = item.key();
    const Json& entry = item.value();
    if (name == "__metadata__") {
      if (!entry.is_object()) return corrupt("__metadata__ is not an object");
      for (const auto& [k, v] : entry.items()) {
        if (v.is_string()) metadata_[k] = v.get_ref<const std::string&>();
      }
      continue;
    }
    auto bad = [&](absl::string_view what) {
      return corrupt(absl::StrCat("tensor '", name, "': ", what));
    };
    if (!entry.is_object()) return bad("entry is not an object");
    const Json* dtype = JsonMember(entry, "dtype");
    const Json* shape = JsonMember(entry, "shape");
    const Json* offsets = JsonMember(entry, "data_offsets");
    if (dtype == nullptr || !dtype->is_string()) return bad("missing 'dtype'");
    if (shape == nullptr || !shape->is_array()) return bad("missing 'shape'");
    if (offsets == nullptr || !offsets->is_array() || offsets->size() != 2) {
      return bad("missing 'data_offsets' [begin, end]");
    }
    TensorInfo t;
    t.name = name;
    t.file = path_;
    t.dtype_name = dtype->get_ref<const std::string&>();
    t.dtype = ParseDType(t.dtype_name);
    const int64_t elem = t.dtype ? DTypeSize(*t.dtype) : OtherDTypeSize(t.dtype_name);
    if (elem == 0) return bad(absl::StrCat("unknown dtype \"", t.dtype_name, "\""));
    int64_t numel = 1;  // checked: a crafted shape must not overflow the byte count below
    for (const Json& d : *shape) {
      if (!IsJsonInteger(d) || JsonInt(d) < 0) return bad("shape entries must be integers >= 0");
      if (JsonInt(d) > 0 && numel > std::numeric_limits<int64_t>::max() / elem / JsonInt(d)) {
        return bad("shape has more elements than any file can hold");
      }
      numel *= JsonInt(d);
      t.shape.push_back(JsonInt(d));
    }
    const Json& b = (*offsets)[0];
    const Json& e = (*offsets)[1];
    if (!IsJsonInteger(b) || !IsJsonInteger(e) || JsonInt(b) < 0 || JsonInt(e) < JsonInt(b)) {
      return bad("data_offsets must be integers with 0 <= begin <= end");
    }
    if (JsonInt(e) > data_size) {
      return absl::InvalidArgumentError(
          absl::StrCat(path_, ": truncated file: tensor '", name, "' ends at byte ", JsonInt(e),
                       " of the data section, which has only ", data_size, " bytes"));
    }
    t.nbytes = JsonInt(e) - JsonInt(b);
    if (t.nbytes != numel * elem) {
      return bad(absl::StrCat("data_offsets span ", t.nbytes, " bytes but shape ", t.ShapeString(),
                              " of ", t.dtype_name, " needs ", numel * elem));
    }
    t.data = bytes + data_start + JsonInt(b);
    tensors_.emplace(name, std::move(t));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Checkpoint>> Checkpoint::Open(const std::string& path) {
  auto ckpt = std::make_unique<Checkpoint>();
  ckpt->path_ = path;
  std::vector<std::string> files;
  std::map<std::string, std::string> expected;  // tensor → file, from the index
  if (fs::is_regular_file(path)) {
    files.push_back(path);
  } else if (fs::is_directory(path)) {
    const fs::path index = fs::path(path) / "model.safetensors.index.json";
    if (fs::exists(index)) {
      DSV2_ASSIGN_OR_RETURN(Json json, ParseJsonFile(index.string()));
      const Json* map = JsonMember(json, "weight_map");
      if (map == nullptr || !map->is_object()) {
        return absl::InvalidArgumentError(absl::StrCat(index.string(), ": no 'weight_map' object"));
      }
      std::set<std::string> unique;
      for (const auto& [name, file] : map->items()) {
        if (!file.is_string()) {
          return absl::InvalidArgumentError(
              absl::StrCat(index.string(), ": weight_map['", name, "'] is not a file name"));
        }
        expected[name] = file.get_ref<const std::string&>();
        unique.insert(file.get_ref<const std::string&>());
      }
      for (const std::string& f : unique) files.push_back((fs::path(path) / f).string());
    } else {
      for (const auto& entry : fs::directory_iterator(path)) {
        if (entry.path().extension() == ".safetensors") files.push_back(entry.path().string());
      }
      std::sort(files.begin(), files.end());
    }
    if (files.empty()) {
      return absl::NotFoundError(absl::StrCat(path,
                                              ": no model.safetensors.index.json and no "
                                              "*.safetensors files"));
    }
  } else {
    return absl::NotFoundError(absl::StrCat("checkpoint path ", path, " does not exist"));
  }
  for (const std::string& f : files) {
    DSV2_ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> file, SafetensorsFile::Open(f));
    for (const auto& [name, info] : file->tensors()) {
      if (auto it = ckpt->by_name_.find(name); it != ckpt->by_name_.end()) {
        return absl::InvalidArgumentError(
            absl::StrCat("tensor '", name, "' appears in both ", it->second->file, " and ", f));
      }
      ckpt->by_name_[name] = &info;
    }
    ckpt->files_.push_back(std::move(file));
  }
  for (const auto& [name, file] : expected) {
    const TensorInfo* t = ckpt->Find(name);
    if (t == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("model.safetensors.index.json maps tensor '",
                                                     name, "' to ", file,
                                                     " but that file does not contain it"));
    }
  }
  return ckpt;
}

const TensorInfo* Checkpoint::Find(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : it->second;
}

int64_t Checkpoint::total_bytes() const {
  int64_t n = 0;
  for (const auto& f : files_) n += f->file_size();
  return n;
}

}  // namespace dsv2
