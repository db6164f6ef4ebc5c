#include "common/gguf.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <limits>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/mapped_pages.h"
#include "common/status_macros.h"

namespace dsv2 {
namespace {

constexpr uint32_t kMagic = 0x46554747;          // "GGUF" read as a little-endian uint32
constexpr int64_t kMaxCount = int64_t{1} << 24;  // tensors, keys, array elements

struct GgmlTypeInfo {
  uint32_t id;
  const char* name;
  int64_t block;  // elements per block; 0: size unknown here
  int64_t bytes;  // bytes per block
  std::optional<DType> dtype;
};

// ggml's tensor types (ids as ggml.h numbers them). Sizes for those whose layout we know.
constexpr GgmlTypeInfo kGgmlTypes[] = {
    {0, "F32", 1, 4, DType::kF32},          {1, "F16", 1, 2, DType::kF16},
    {2, "Q4_0", 32, 18, DType::kQ4_0},      {3, "Q4_1", 32, 20, std::nullopt},
    {6, "Q5_0", 32, 22, DType::kQ5_0},      {7, "Q5_1", 32, 24, std::nullopt},
    {8, "Q8_0", 32, 34, DType::kQ8_0},      {9, "Q8_1", 32, 36, std::nullopt},
    {10, "Q2_K", 256, 84, std::nullopt},    {11, "Q3_K", 256, 110, std::nullopt},
    {12, "Q4_K", 256, 144, DType::kQ4_K},   {13, "Q5_K", 256, 176, DType::kQ5_K},
    {14, "Q6_K", 256, 210, DType::kQ6_K},   {15, "Q8_K", 256, 292, std::nullopt},
    {16, "IQ2_XXS", 0, 0, std::nullopt},    {17, "IQ2_XS", 0, 0, std::nullopt},
    {18, "IQ3_XXS", 0, 0, std::nullopt},    {19, "IQ1_S", 0, 0, std::nullopt},
    {20, "IQ4_NL", 32, 18, DType::kIQ4_NL}, {21, "IQ3_S", 0, 0, std::nullopt},
    {22, "IQ2_S", 0, 0, std::nullopt},      {23, "IQ4_XS", 256, 136, std::nullopt},
    {24, "I8", 1, 1, std::nullopt},         {25, "I16", 1, 2, std::nullopt},
    {26, "I32", 1, 4, DType::kI32},         {27, "I64", 1, 8, DType::kI64},
    {28, "F64", 1, 8, std::nullopt},        {29, "IQ1_M", 0, 0, std::nullopt},
    {30, "BF16", 1, 2, DType::kBF16},       {34, "TQ1_0", 0, 0, std::nullopt},
    {35, "TQ2_0", 0, 0, std::nullopt},      {39, "MXFP4", 32, 17, std::nullopt},
};

const GgmlTypeInfo* TypeInfo(uint32_t id) {
  for (const GgmlTypeInfo& t : kGgmlTypes) {
    if (t.id == id) return &t;
  }
  return nullptr;
}

// A bounds-checked cursor over the file's bytes.
class Reader {
 public:
  Reader(const uint8_t* data, int64_t size, const std::string& path)
      : data_(data), size_(size), path_(path) {}
  int64_t pos() const { return pos_; }

  absl::Status Corrupt(absl::string_view what) const {
    return absl::InvalidArgumentError(
        absl::StrCat(path_, ": corrupt GGUF file at byte ", pos_, ": ", what));
  }
  template <typename T>
  absl::StatusOr<T> Get(absl::string_view what) {
    if (size_ - pos_ < static_cast<int64_t>(sizeof(T))) {
      return Corrupt(absl::StrCat("truncated reading ", what));
    }
    T v;
    std::memcpy(&v, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  absl::StatusOr<std::string> String(absl::string_view what) {
    DSV2_ASSIGN_OR_RETURN(const uint64_t n, Get<uint64_t>(what));
    if (n > static_cast<uint64_t>(size_ - pos_)) {
      return Corrupt(absl::StrCat(what, ": a string of ", n, " bytes runs past the end"));
    }
    std::string s(reinterpret_cast<const char*>(data_ + pos_), n);
    pos_ += static_cast<int64_t>(n);
    return s;
  }

 private:
  const uint8_t* data_;
  int64_t size_;
  int64_t pos_ = 0;
  const std::string& path_;
};

bool IsIntegerType(GgufValueType t) {
  switch (t) {
    case GgufValueType::kU8:
    case GgufValueType::kI8:
    case GgufValueType::kU16:
    case GgufValueType::kI16:
    case GgufValueType::kU32:
    case GgufValueType::kI32:
    case GgufValueType::kU64:
    case GgufValueType::kI64:
    case GgufValueType::kBool:
      return true;
    default:
      return false;
  }
}

// One scalar of type t: integers (and bools) into *i, floats into *f, strings into *s.
absl::Status ReadScalar(Reader& r, GgufValueType t, const std::string& key, int64_t* i, double* f,
                        std::string* s) {
  switch (t) {
    case GgufValueType::kU8: {
      DSV2_ASSIGN_OR_RETURN(*i, r.Get<uint8_t>(key));
      return absl::OkStatus();
    }
    case GgufValueType::kI8: {
      DSV2_ASSIGN_OR_RETURN(*i, r.Get<int8_t>(key));
      return absl::OkStatus();
    }
    case GgufValueType::kU16: {
      DSV2_ASSIGN_OR_RETURN(*i, r.Get<uint16_t>(key));
      return absl::OkStatus();
    }
    case GgufValueType::kI16: {
      DSV2_ASSIGN_OR_RETURN(*i, r.Get<int16_t>(key));
      return absl::OkStatus();
    }
    case GgufValueType::kU32: {
      DSV2_ASSIGN_OR_RETURN(*i, r.Get<uint32_t>(key));
      return absl::OkStatus();
    }
    case GgufValueType::kI32: {
      DSV2_ASSIGN_OR_RETURN(*i, r.Get<int32_t>(key));
      return absl::OkStatus();
    }
    case GgufValueType::kBool: {
      DSV2_ASSIGN_OR_RETURN(const uint8_t b, r.Get<uint8_t>(key));
      if (b > 1) return r.Corrupt(absl::StrCat(key, ": a bool of value ", b));
      *i = b;
      return absl::OkStatus();
    }
    case GgufValueType::kU64: {
      DSV2_ASSIGN_OR_RETURN(const uint64_t u, r.Get<uint64_t>(key));
      if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return r.Corrupt(absl::StrCat(key, ": ", u, " does not fit in 63 bits"));
      }
      *i = static_cast<int64_t>(u);
      return absl::OkStatus();
    }
    case GgufValueType::kI64: {
      DSV2_ASSIGN_OR_RETURN(*i, r.Get<int64_t>(key));
      return absl::OkStatus();
    }
    case GgufValueType::kF32: {
      DSV2_ASSIGN_OR_RETURN(*f, r.Get<float>(key));
      return absl::OkStatus();
    }
    case GgufValueType::kF64: {
      DSV2_ASSIGN_OR_RETURN(*f, r.Get<double>(key));
      return absl::OkStatus();
    }
    case GgufValueType::kString: {
      DSV2_ASSIGN_OR_RETURN(*s, r.String(key));
      return absl::OkStatus();
    }
    default:
      return r.Corrupt(absl::StrCat(key, ": unknown value type ", static_cast<uint32_t>(t)));
  }
}

absl::StatusOr<GgufValue> ReadValue(Reader& r, const std::string& key) {
  GgufValue v;
  DSV2_ASSIGN_OR_RETURN(const uint32_t type, r.Get<uint32_t>(key));
  v.type = static_cast<GgufValueType>(type);
  if (v.type != GgufValueType::kArray) {
    DSV2_RETURN_IF_ERROR(ReadScalar(r, v.type, key, &v.i, &v.f, &v.s));
    return v;
  }
  DSV2_ASSIGN_OR_RETURN(const uint32_t elem, r.Get<uint32_t>(key));
  v.array_type = static_cast<GgufValueType>(elem);
  DSV2_ASSIGN_OR_RETURN(const uint64_t n, r.Get<uint64_t>(key));
  if (v.array_type == GgufValueType::kArray) {
    return r.Corrupt(absl::StrCat(key, ": arrays of arrays are not read"));
  }
  if (n > static_cast<uint64_t>(kMaxCount)) {
    return r.Corrupt(absl::StrCat(key, ": an array of ", n, " elements"));
  }
  for (uint64_t k = 0; k < n; ++k) {
    int64_t i = 0;
    double f = 0;
    std::string s;
    DSV2_RETURN_IF_ERROR(ReadScalar(r, v.array_type, key, &i, &f, &s));
    if (v.array_type == GgufValueType::kString) {
      v.strings.push_back(std::move(s));
    } else if (IsIntegerType(v.array_type)) {
      v.ints.push_back(i);
    } else {
      v.floats.push_back(f);
    }
  }
  return v;
}

}  // namespace

bool GgufValue::is_integer() const { return IsIntegerType(type); }
bool GgufValue::is_float() const {
  return type == GgufValueType::kF32 || type == GgufValueType::kF64;
}

std::string GgufTensor::ShapeString() const {
  return absl::StrCat("[", absl::StrJoin(dims, ", "), "]");
}

std::string GgmlTypeName(uint32_t type) {
  const GgmlTypeInfo* t = TypeInfo(type);
  return t != nullptr ? t->name : absl::StrCat("type ", type);
}

GgufFile::~GgufFile() {
  if (map_ != nullptr) munmap(map_, static_cast<size_t>(size_));
}

absl::StatusOr<std::unique_ptr<GgufFile>> GgufFile::Open(const std::string& path) {
  std::unique_ptr<GgufFile> f(new GgufFile());
  f->path_ = path;
  DSV2_ASSIGN_OR_RETURN(const MappedFile m, MapFileReadOnly(path, 1));
  f->size_ = m.size;
  if (m.map == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": empty file (not GGUF)"));
  }
  f->map_ = m.map;
  f->bytes_ = static_cast<const uint8_t*>(m.map);
  DSV2_RETURN_IF_ERROR(f->Parse());
  return f;
}

absl::StatusOr<std::unique_ptr<GgufFile>> GgufFile::FromBytes(std::string_view bytes,
                                                              const std::string& name) {
  std::unique_ptr<GgufFile> f(new GgufFile());
  f->path_ = name;
  f->size_ = static_cast<int64_t>(bytes.size());
  f->bytes_ = reinterpret_cast<const uint8_t*>(bytes.data());
  DSV2_RETURN_IF_ERROR(f->Parse());
  return f;
}

const GgufValue* GgufFile::Find(const std::string& key) const {
  auto it = metadata_.find(key);
  return it == metadata_.end() ? nullptr : &it->second;
}

absl::Status GgufFile::Parse() {
  Reader r(bytes_, size_, path_);
  DSV2_ASSIGN_OR_RETURN(const uint32_t magic, r.Get<uint32_t>("the magic"));
  if (magic != kMagic) {
    return absl::InvalidArgumentError(
        absl::StrCat(path_, ": not a GGUF file (it does not start with \"GGUF\")"));
  }
  DSV2_ASSIGN_OR_RETURN(version_, r.Get<uint32_t>("the version"));
  if (version_ != 2 && version_ != 3) {
    return absl::InvalidArgumentError(absl::StrCat(path_, ": GGUF version ", version_,
                                                   " is not read here (versions 2 and 3 are)"));
  }
  DSV2_ASSIGN_OR_RETURN(const int64_t n_tensors, r.Get<int64_t>("the tensor count"));
  DSV2_ASSIGN_OR_RETURN(const int64_t n_kv, r.Get<int64_t>("the key count"));
  if (n_tensors < 0 || n_tensors > kMaxCount || n_kv < 0 || n_kv > kMaxCount) {
    return r.Corrupt(absl::StrCat(n_tensors, " tensors and ", n_kv, " keys"));
  }
  for (int64_t k = 0; k < n_kv; ++k) {
    DSV2_ASSIGN_OR_RETURN(std::string key, r.String("a key"));
    DSV2_ASSIGN_OR_RETURN(GgufValue v, ReadValue(r, key));
    if (!metadata_.emplace(key, std::move(v)).second) {
      return r.Corrupt(absl::StrCat("key '", key, "' appears twice"));
    }
  }
  int64_t alignment = 32;
  if (const GgufValue* a = Find("general.alignment")) {
    if (!a->is_integer() || a->i <= 0 || a->i > (1 << 20) || (a->i & (a->i - 1)) != 0) {
      return r.Corrupt("general.alignment is not a power of two up to 2^20");
    }
    alignment = a->i;
  }
  struct Entry {
    GgufTensor t;
    uint64_t offset;
  };
  std::vector<Entry> entries;
  for (int64_t k = 0; k < n_tensors; ++k) {
    Entry e;
    DSV2_ASSIGN_OR_RETURN(e.t.name, r.String("a tensor name"));
    const std::string& name = e.t.name;
    DSV2_ASSIGN_OR_RETURN(const uint32_t n_dims, r.Get<uint32_t>(name));
    if (n_dims == 0 || n_dims > 4) {
      return r.Corrupt(absl::StrCat("tensor '", name, "' has ", n_dims, " dimensions"));
    }
    int64_t numel = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      DSV2_ASSIGN_OR_RETURN(const int64_t dim, r.Get<int64_t>(name));
      if (dim < 0 || dim > (int64_t{1} << 40) || (dim > 0 && numel > (int64_t{1} << 42) / dim)) {
        return r.Corrupt(absl::StrCat("tensor '", name, "' has an implausible dimension ", dim));
      }
      e.t.dims.push_back(dim);
      numel *= dim;
    }
    DSV2_ASSIGN_OR_RETURN(e.t.ggml_type, r.Get<uint32_t>(name));
    DSV2_ASSIGN_OR_RETURN(e.offset, r.Get<uint64_t>(name));
    const GgmlTypeInfo* info = TypeInfo(e.t.ggml_type);
    if (info != nullptr && info->block > 0) {
      if (e.t.dims[0] % info->block != 0) {
        return r.Corrupt(absl::StrCat("tensor '", name, "' (", info->name, ") has rows of ",
                                      e.t.dims[0], " elements, not whole blocks of ", info->block));
      }
      e.t.nbytes = numel / info->block * info->bytes;
      e.t.dtype = info->dtype;
    } else {
      e.t.nbytes = -1;  // a type we do not read: its size is not checked
    }
    if (e.offset % static_cast<uint64_t>(alignment) != 0) {
      return r.Corrupt(absl::StrCat("tensor '", name, "' at offset ", e.offset,
                                    " is not aligned to ", alignment));
    }
    entries.push_back(std::move(e));
  }
  const int64_t data_start = (r.pos() + alignment - 1) / alignment * alignment;
  for (Entry& e : entries) {
    GgufTensor& t = e.t;
    t.file = path_;
    if (t.nbytes >= 0) {
      if (e.offset > static_cast<uint64_t>(size_) ||
          static_cast<int64_t>(e.offset) > size_ - data_start ||
          t.nbytes > size_ - data_start - static_cast<int64_t>(e.offset)) {
        return absl::InvalidArgumentError(absl::StrCat(
            path_, ": corrupt GGUF file: tensor '", t.name, "' (", t.nbytes, " bytes at offset ",
            e.offset, ") runs past the end of the file (", size_, " bytes)"));
      }
      t.data = bytes_ + data_start + e.offset;
    }
    const std::string name = t.name;
    if (!tensors_.emplace(name, std::move(t)).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(path_, ": corrupt GGUF file: tensor '", name, "' appears twice"));
    }
  }
  return absl::OkStatus();
}

bool IsGgufPath(const std::string& path) { return absl::EndsWithIgnoreCase(path, ".gguf"); }

std::string TokenizerDirOf(const std::string& model) {
  if (!IsGgufPath(model)) return model;
  const std::filesystem::path dir = std::filesystem::path(model).parent_path();
  return dir.empty() ? "." : dir.string();
}

absl::StatusOr<std::unique_ptr<GgufModel>> GgufModel::Open(const std::string& path) {
  auto m = std::make_unique<GgufModel>();
  DSV2_ASSIGN_OR_RETURN(std::unique_ptr<GgufFile> first, GgufFile::Open(path));
  int64_t count = 1;
  if (const GgufValue* v = first->Find("split.count")) {
    if (!v->is_integer() || v->i < 1 || v->i > 9999) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": split.count is not 1-9999"));
    }
    count = v->i;
  }
  m->files_.push_back(std::move(first));
  if (count > 1) {
    // NAME-00001-of-0000N.gguf → NAME-0000k-of-0000N.gguf
    const std::string suffix = absl::StrFormat("-00001-of-%05d.gguf", count);
    if (!absl::EndsWith(path, suffix)) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": a model split in ", count,
                       " files is opened from its first part, named *", suffix));
    }
    const std::string stem = path.substr(0, path.size() - suffix.size());
    for (int64_t k = 2; k <= count; ++k) {
      const std::string part = absl::StrFormat("%s-%05d-of-%05d.gguf", stem, k, count);
      DSV2_ASSIGN_OR_RETURN(std::unique_ptr<GgufFile> f, GgufFile::Open(part));
      m->files_.push_back(std::move(f));
    }
  }
  for (const auto& f : m->files_) {
    for (const auto& [name, t] : f->tensors()) {
      if (!m->tensors_.emplace(name, &t).second) {
        return absl::InvalidArgumentError(
            absl::StrCat(f->path(), ": tensor '", name, "' is also in another part"));
      }
    }
  }
  return m;
}

const GgufTensor* GgufModel::FindTensor(const std::string& name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : it->second;
}

int64_t GgufModel::total_bytes() const {
  int64_t b = 0;
  for (const auto& f : files_) b += f->file_size();
  return b;
}

absl::StatusOr<int64_t> GgufModel::Int(const std::string& key) const {
  const GgufValue* v = first().Find(key);
  if (v == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(first().path(), ": GGUF key '", key, "' is missing"));
  }
  if (!v->is_integer()) {
    return absl::InvalidArgumentError(
        absl::StrCat(first().path(), ": GGUF key '", key, "' is not an integer"));
  }
  return v->i;
}

std::optional<int64_t> GgufModel::OptionalInt(const std::string& key) const {
  const GgufValue* v = first().Find(key);
  if (v == nullptr || !v->is_integer()) return std::nullopt;
  return v->i;
}

absl::StatusOr<double> GgufModel::Float(const std::string& key) const {
  const GgufValue* v = first().Find(key);
  if (v == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(first().path(), ": GGUF key '", key, "' is missing"));
  }
  if (!v->is_float() && !v->is_integer()) {
    return absl::InvalidArgumentError(
        absl::StrCat(first().path(), ": GGUF key '", key, "' is not a number"));
  }
  return v->is_float() ? v->f : static_cast<double>(v->i);
}

std::optional<double> GgufModel::OptionalFloat(const std::string& key) const {
  const GgufValue* v = first().Find(key);
  if (v == nullptr) return std::nullopt;
  if (v->is_float()) return v->f;
  if (v->is_integer()) return static_cast<double>(v->i);
  return std::nullopt;
}

absl::StatusOr<std::string> GgufModel::String(const std::string& key) const {
  const GgufValue* v = first().Find(key);
  if (v == nullptr || v->type != GgufValueType::kString) {
    return absl::InvalidArgumentError(absl::StrCat(first().path(), ": GGUF key '", key, "' is ",
                                                   v == nullptr ? "missing" : "not a string"));
  }
  return v->s;
}

}  // namespace dsv2
