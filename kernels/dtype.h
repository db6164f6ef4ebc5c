// Element types of checkpoint tensors and the scalar conversions between them. Besides plain
// element types, a weight may be block-quantized (GGUF's formats, kernels/quant_blocks.h): a
// row of `cols` elements is cols / BlockElements blocks of BlockBytes bytes each.
#pragma once

#include <cstdint>
#include <cstring>
#include <string_view>

namespace dsv2 {

enum class DType : uint8_t {
  kF32,
  kF16,
  kBF16,
  kI64,
  kI32,
  kU8,
  // Block-quantized weights (layouts and math: kernels/quant_blocks.h).
  kQ4_0,
  kQ5_0,
  kQ8_0,
  kQ4_K,
  kQ5_K,
  kQ6_K,
  kIQ4_NL,
};

constexpr bool IsBlockQuantized(DType t) { return t >= DType::kQ4_0; }

// Elements per block and bytes per block of a block-quantized type; 1 and DTypeSize otherwise.
constexpr int64_t BlockElements(DType t) {
  switch (t) {
    case DType::kQ4_0:
    case DType::kQ5_0:
    case DType::kQ8_0:
    case DType::kIQ4_NL:
      return 32;
    case DType::kQ4_K:
    case DType::kQ5_K:
    case DType::kQ6_K:
      return 256;
    default:
      return 1;
  }
}

// Bytes of one element; 0 for a block-quantized type, whose elements have no size of their own
// (use RowBytes).
constexpr int64_t DTypeSize(DType t) {
  switch (t) {
    case DType::kF32:
    case DType::kI32:
      return 4;
    case DType::kF16:
    case DType::kBF16:
      return 2;
    case DType::kI64:
      return 8;
    case DType::kU8:
      return 1;
    default:
      return 0;
  }
}

constexpr int64_t BlockBytes(DType t) {
  switch (t) {
    case DType::kQ4_0:
      return 18;
    case DType::kQ5_0:
      return 22;
    case DType::kQ8_0:
      return 34;
    case DType::kIQ4_NL:
      return 18;
    case DType::kQ4_K:
      return 144;
    case DType::kQ5_K:
      return 176;
    case DType::kQ6_K:
      return 210;
    default:
      return DTypeSize(t);
  }
}

// Bytes of `elements` consecutive elements (a multiple of BlockElements for a quantized type).
constexpr int64_t RowBytes(DType t, int64_t elements) {
  return elements / BlockElements(t) * BlockBytes(t);
}

// The spelling safetensors uses ("F32", "BF16", ...).
inline std::string_view DTypeName(DType t) {
  switch (t) {
    case DType::kF32:
      return "F32";
    case DType::kF16:
      return "F16";
    case DType::kBF16:
      return "BF16";
    case DType::kI64:
      return "I64";
    case DType::kI32:
      return "I32";
    case DType::kU8:
      return "U8";
    case DType::kQ4_0:
      return "Q4_0";
    case DType::kQ5_0:
      return "Q5_0";
    case DType::kQ8_0:
      return "Q8_0";
    case DType::kQ4_K:
      return "Q4_K";
    case DType::kQ5_K:
      return "Q5_K";
    case DType::kQ6_K:
      return "Q6_K";
    case DType::kIQ4_NL:
      return "IQ4_NL";
  }
  return "?";
}

// The spelling of --dtype, GetModelInfo and the worker's Configure ("float32", "bfloat16").
inline const char* PrecisionName(DType t) {
  switch (t) {
    case DType::kF32:
      return "float32";
    case DType::kBF16:
      return "bfloat16";
    case DType::kF16:
      return "float16";
    default:
      return DTypeName(t).data();  // not a compute precision; the names are literals
  }
}

inline float Bf16ToFloat(uint16_t v) {
  uint32_t bits = static_cast<uint32_t>(v) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

// Round to nearest even, as torch does; NaN stays NaN.
inline uint16_t FloatToBf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof(bits));
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}

inline float F16ToFloat(uint16_t h) {
  const uint32_t sign = (h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: normalise
      exp = 127 - 15 + 1;
      while ((mant & 0x400u) == 0) {
        mant <<= 1;
        --exp;
      }
      mant &= 0x3ffu;
      bits = sign | (exp << 23) | (mant << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

// Reads element i of a float-typed buffer (F32, F16 or BF16) as float. The buffer may be a
// tensor of a mapped checkpoint at any byte offset (the safetensors format does not promise
// alignment), so elements are read with memcpy, never through a misaligned pointer
// (`scripts/test.sh --sanitize address` found LoaderTest's files doing that).
inline float LoadAsFloat(const void* data, DType t, int64_t i) {
  const auto* bytes = static_cast<const unsigned char*>(data);
  switch (t) {
    case DType::kF32: {
      float f;
      std::memcpy(&f, bytes + i * 4, sizeof(f));
      return f;
    }
    case DType::kF16:
    case DType::kBF16: {
      uint16_t h;
      std::memcpy(&h, bytes + i * 2, sizeof(h));
      return t == DType::kF16 ? F16ToFloat(h) : Bf16ToFloat(h);
    }
    default:
      return 0.0f;
  }
}

}  // namespace dsv2
