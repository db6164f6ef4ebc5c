// FillRandom: out[i] = act(offset + scale · u(seed, i)), u uniform in [−1, 1) from a counter
// hash — the same values on the CPU and the GPU for the same (seed, i). For synthetic weights
// created in place (--synthetic v2-lite: a full-size model without a 31 GB file).
#pragma once

#include <cstdint>

#include "kernels/exec_context.h"
#include "kernels/host_device.h"

namespace dsv2 {

struct FillRandomArgs {
  void* out = nullptr;  // [n] of `dtype` (F32 or BF16) on the context's device
  DType dtype = DType::kF32;
  int64_t n = 0;
  float scale = 1.0f;
  float offset = 0.0f;
  uint64_t seed = 0;
};

// splitmix64 of (seed, i), top 24 bits as a float in [−1, 1).
DSV2_HD float RandomUniform(uint64_t seed, uint64_t i) {
  uint64_t z = seed * 0x9E3779B97F4A7C15ull + i + 0x632BE59BD9B4E019ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return static_cast<float>(z >> 40) * (2.0f / 16777216.0f) - 1.0f;
}

namespace cpu {
void FillRandom(const CpuContext& ctx, const FillRandomArgs& args);
}
namespace cuda {
void FillRandom(CudaContext& ctx, const FillRandomArgs& args);
}

inline void FillRandom(const ExecContext& ctx, const FillRandomArgs& args) {
  if (ctx.on_cuda()) return cuda::FillRandom(ctx.cuda(), args);
  cpu::FillRandom(ctx.cpu(), args);
}

}  // namespace dsv2
