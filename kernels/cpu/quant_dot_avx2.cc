// The dot kernel of MatMul on block-quantized weights with AVX2 (vpmaddubsw + vpmaddwd):
// kernels/cpu/quant_dot_simd.h.
#include <cstring>

#define QUANT_TARGET __attribute__((target("avx2,fma,f16c")))
#define QUANT_VNNI 0
#include "kernels/cpu/quant_dot_simd.h"

namespace dsv2::quant {

void QuantDotAvx2(const QuantMatMul& a, int64_t t0, int64_t t1, int64_t r0, int64_t r1) {
  DotAnyFormat(a, t0, t1, r0, r1);
}

void DequantizeRowsAvx2(const WeightView& w, int64_t r0, int64_t r1, float* out) {
  DequantizeAnyFormat(w, r0, r1, out);
}

}  // namespace dsv2::quant
