// LatentCacheWrite: the last step of the compressed KV path, fused: for each token t,
//   ckv[t] = [c | k_pe] (kv_a_proj's output, kv_lora_rank + rope_dim values)
//   cache row(slot[t]) = [ rmsnorm(c) · norm_weight | rope(k_pe, position[t]) ]
// where slot[t] = page · page_size + offset is the flat row index in the layer's pool. RMSNorm
// and RoPE follow kernels/rms_norm.h and kernels/rope.h exactly (statistics and angles in
// float32, the normalized row rounded to the activation dtype before the weight multiplies).
#pragma once

#include <cstdint>

#include "kernels/exec_context.h"
#include "kernels/mla_attention.h"

namespace dsv2 {

struct LatentCacheWriteArgs {
  const void* ckv = nullptr;  // [n_tokens, kv_lora_rank + rope_dim], activation dtype
  int64_t ckv_stride = 0;     // elements between tokens
  int64_t n_tokens = 0;
  int64_t kv_lora_rank = 0;
  int64_t rope_dim = 0;
  const float* norm_weight = nullptr;  // [kv_lora_rank]
  float eps = 1e-6f;
  const int32_t* positions = nullptr;  // [n_tokens]
  const int64_t* slots = nullptr;      // [n_tokens]
  const float* inv_freq = nullptr;     // [rope_dim / 2]
  float attn_factor = 1.0f;
  LatentCacheLayerView cache;  // written
};

namespace cpu {
void LatentCacheWrite(const CpuContext& ctx, const LatentCacheWriteArgs& args);
}
namespace cuda {
void LatentCacheWrite(CudaContext& ctx, const LatentCacheWriteArgs& args);
}

inline void LatentCacheWrite(const ExecContext& ctx, const LatentCacheWriteArgs& args) {
  if (ctx.on_cuda()) return cuda::LatentCacheWrite(ctx.cuda(), args);
  cpu::LatentCacheWrite(ctx.cpu(), args);
}

}  // namespace dsv2
