// The gated MLP's activation: out[r, i] = silu(gate[r, i]) · up[r, i], silu(g) = g / (1 + e^−g).
// gate, up, out: [rows, width] in the context's activation dtype, rows `*_stride` elements
// apart; out may alias gate or up.
#pragma once

#include <cmath>
#include <cstdint>

#include "kernels/exec_context.h"
#include "kernels/host_device.h"

namespace dsv2 {

struct SiluMulArgs {
  const void* gate = nullptr;
  const void* up = nullptr;
  void* out = nullptr;
  int64_t rows = 0;
  int64_t width = 0;
  int64_t gate_stride = 0;
  int64_t up_stride = 0;
  int64_t out_stride = 0;
};

DSV2_HD float SiluTimes(float g, float u) { return g / (1.0f + expf(-g)) * u; }

namespace cpu {
void SiluMul(const CpuContext& ctx, const SiluMulArgs& args);
}
namespace cuda {
void SiluMul(CudaContext& ctx, const SiluMulArgs& args);
}

inline void SiluMul(const ExecContext& ctx, const SiluMulArgs& args) {
  if (ctx.on_cuda()) return cuda::SiluMul(ctx.cuda(), args);
  cpu::SiluMul(ctx.cpu(), args);
}

}  // namespace dsv2
