// The CPU twins' activation types, as kernels/cuda/cuda_common.cuh has them for the GPU: float
// or Bf16 (bfloat16 bits), their conversions to and from float, and DispatchAct, which runs a
// generic lambda with the element type of the run's activation dtype. Rounding is to nearest
// even, as torch and __float2bfloat16_rn round.
#pragma once

#include <cstdint>

#include "kernels/check.h"
#include "kernels/dtype.h"

namespace dsv2::cpu {

struct Bf16 {
  uint16_t bits;
};
static_assert(sizeof(Bf16) == 2);

inline float ToFloat(float v) { return v; }
inline float ToFloat(Bf16 v) { return Bf16ToFloat(v.bits); }

template <typename T>
inline T FromFloat(float v);
template <>
inline float FromFloat<float>(float v) {
  return v;
}
template <>
inline Bf16 FromFloat<Bf16>(float v) {
  return Bf16{FloatToBf16(v)};
}

// v as a T holds it (identity for float): the reference's intermediate roundings.
template <typename T>
inline float RoundTo(float v) {
  return ToFloat(FromFloat<T>(v));
}

// Calls fn(T{}) with T = float or Bf16 for the activation dtype.
template <typename Fn>
void DispatchAct(DType act, Fn&& fn) {
  if (act == DType::kF32) {
    fn(float{});
  } else {
    DSV2_CHECK_MSG(act == DType::kBF16, "CPU ops run in float32 or bfloat16");
    fn(Bf16{});
  }
}

// n bfloat16 values widened to float (exact), and n floats rounded to bfloat16 (nearest even,
// NaN kept a NaN), vectorised for the ISA the processor has. src and dst do not overlap.
void WidenBf16(const Bf16* src, float* dst, int64_t n);
void RoundToBf16(const float* src, Bf16* dst, int64_t n);

}  // namespace dsv2::cpu
