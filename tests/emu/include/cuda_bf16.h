// Stand-in for <cuda_bf16.h> under the CPU emulation: __nv_bfloat16 as its 16 bits, with the
// conversions the kernels use (round-to-nearest-even, as the device's __float2bfloat16_rn).
#pragma once

#include <cstdint>
#include <cstring>

struct __nv_bfloat16 {
  uint16_t __x = 0;
  __nv_bfloat16() = default;
};
struct __nv_bfloat162 {
  __nv_bfloat16 x, y;
};

inline float __bfloat162float(__nv_bfloat16 v) {
  const uint32_t bits = static_cast<uint32_t>(v.__x) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}
inline __nv_bfloat16 __float2bfloat16_rn(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  __nv_bfloat16 r;
  if ((bits & 0x7fffffffu) > 0x7f800000u) {  // NaN: keep it a (quiet) NaN
    r.__x = static_cast<uint16_t>((bits >> 16) | 0x0040u);
    return r;
  }
  bits += 0x7fffu + ((bits >> 16) & 1u);  // round half to even
  r.__x = static_cast<uint16_t>(bits >> 16);
  return r;
}
inline __nv_bfloat16 __float2bfloat16(float f) { return __float2bfloat16_rn(f); }
