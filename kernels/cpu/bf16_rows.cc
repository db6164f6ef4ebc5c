// The bulk bfloat16 <-> float conversions of kernels/cpu/act_types.h: plain loops the compiler
// vectorises for each ISA (integer shifts and a blend; no bf16 instructions needed).
#include <bit>
#include <cstdint>

#include "kernels/cpu/act_types.h"
#include "kernels/cpu/simd_intrinsics.h"

namespace dsv2::cpu {

DSV2_ISA_CLONES void WidenBf16(const Bf16* src, float* dst, int64_t n) {
  const uint16_t* s = &src->bits;
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) dst[i] = std::bit_cast<float>(static_cast<uint32_t>(s[i]) << 16);
}

DSV2_ISA_CLONES void RoundToBf16(const float* src, Bf16* dst, int64_t n) {
  uint16_t* d = &dst->bits;
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t b = std::bit_cast<uint32_t>(src[i]);
    const uint32_t rounded = (b + 0x7fffu + ((b >> 16) & 1u)) >> 16;
    const uint32_t quiet_nan = (b >> 16) | 0x40u;  // as FloatToBf16: NaN stays NaN
    d[i] = static_cast<uint16_t>((b & 0x7fffffffu) > 0x7f800000u ? quiet_nan : rounded);
  }
}

}  // namespace dsv2::cpu
