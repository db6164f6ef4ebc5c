// The dot kernel of MatMul on block-quantized weights with AVX-512 VNNI (vpdpbusd on ymm):
// kernels/cpu/quant_dot_simd.h.
#include <cstring>

#define QUANT_TARGET \
  __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")))
#define QUANT_VNNI 1
#include "kernels/cpu/quant_dot_simd.h"

namespace dsv2::quant {

void QuantDotAvx512Vnni(const QuantMatMul& a, int64_t t0, int64_t t1, int64_t r0, int64_t r1) {
  DotAnyFormat(a, t0, t1, r0, r1);
}

void DequantizeRowsAvx512Vnni(const WeightView& w, int64_t r0, int64_t r1, float* out) {
  DequantizeAnyFormat(w, r0, r1, out);
}

void DequantizeRowsBf16Avx512(const WeightView& w, int64_t r0, int64_t r1, uint16_t* out) {
  DequantizeBf16AnyFormat(w, r0, r1, out);
}

}  // namespace dsv2::quant
