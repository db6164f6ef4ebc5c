// Block-quantized weights: the block layouts of GGUF's formats (as its public specification and
// ggml's headers define them, byte for byte, so a GGUF file's tensors are used in place), and
// the scalar conversions. Elements are numbered within a block from 0; `d`, `dmin` are IEEE
// half floats; every block is packed (no padding) and may sit at any byte offset.
//
//   Q8_0   32 elements, 34 bytes: d; int8 q[32].                        w = d·q
//   Q4_0   32 elements, 18 bytes: d; qs[16]: element j < 16 is the low nibble of qs[j], element
//          j + 16 its high nibble.                                      w = d·(q − 8)
//   Q5_0   32 elements, 22 bytes: d; qh[4] (bit j: the 5th bit of element j, little-endian);
//          qs[16] as Q4_0.                                              w = d·(q − 16)
//   IQ4_NL 32 elements, 18 bytes: d; qs[16] as Q4_0, indices into a fixed table of 16 int8
//          levels (kIq4NlLevels).                                       w = d·levels[q]
//   Q4_K   256 elements, 144 bytes: d; dmin; scales[12] (eight 6-bit scales sc and eight 6-bit
//          mins m, packed: ScaleMinK4); qs[128]: four runs of 64 elements, run i held by
//          qs[32i, 32i+32): sub-block 2i in the low nibbles, 2i+1 in the high ones.
//                                                                 w = d·sc[s]·q − dmin·m[s]
//   Q5_K   256 elements, 176 bytes: d; dmin; scales[12]; qh[32]; qs[128]: as Q4_K, and bit s of
//          qh[l] is the 5th bit of element l of sub-block s.     w = d·sc[s]·q − dmin·m[s]
//   Q6_K   256 elements, 210 bytes: ql[128]; qh[64]; int8 scales[16] (one per 16 elements);
//          d. Two halves of 128: half h uses ql[64h, 64h+64), qh[32h, 32h+32); element
//          l + 32k (l < 32, k < 4) of the half: low 4 bits from ql[l] (k = 0, 2) or
//          ql[l + 32] (k = 1, 3), low nibble for k < 2, high for k >= 2; high 2 bits are bits
//          2k, 2k+1 of qh[l].                                   w = d·scales[e / 16]·(q − 32)
//
// Every format is a sum of sub-blocks of 16 or 32 elements, each w = scale·q − offset with q a
// small unsigned integer (Q8_0 and IQ4_NL: q = signed value + 128): the integer dot products of
// the CPU kernels rest on that (kernels/cpu/quant_dot.h).
#pragma once

#include <cstdint>

#include "kernels/dtype.h"

namespace dsv2 {

inline constexpr int8_t kIq4NlLevels[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                            1,    13,   25,  38,  53,  69,  89,  113};

// Sub-block s (< 8) of a Q4_K / Q5_K block: its 6-bit scale and min from the 12 packed bytes.
inline void ScaleMinK4(const uint8_t* scales, int s, int* sc, int* m) {
  if (s < 4) {
    *sc = scales[s] & 63;
    *m = scales[s + 4] & 63;
  } else {
    *sc = (scales[s + 4] & 0x0F) | ((scales[s - 4] >> 6) << 4);
    *m = (scales[s + 4] >> 4) | ((scales[s] >> 6) << 4);
  }
}

// IEEE half precision, round to nearest even (the `d` of every block).
uint16_t FloatToF16(float f);

// One row of `n` elements (a multiple of BlockElements(t)) to float32. Any element type:
// float types are converted as LoadAsFloat does.
void DequantizeRow(DType t, const void* src, float* dst, int64_t n);

// Quantizes one row of `n` float32 elements into `dst` (RowBytes(t, n) bytes). A scale is
// chosen per block (K formats: per sub-block, then the scales themselves quantized) to keep the
// squared error small; deterministic. Float types are converted (F32, F16, BF16).
void QuantizeRow(DType t, const float* src, void* dst, int64_t n);

// The format named as GGUF and llama.cpp spell it ("Q8_0", "q4_k", ...), case-insensitive;
// nullopt-like false for another name.
bool ParseQuantType(const char* name, DType* t);

}  // namespace dsv2
