// Row gather: out[t, :] = act(table[ids[t], :]) for t < n. `table` is a [rows, dim] matrix on
// the context's device: the embedding weight, or (with dtype = act dtype) an activation buffer
// whose chosen rows are gathered (the rows whose logits were asked for). On the CPU the table
// may be block-quantized (a GGUF file's token_embd): each row is dequantized as it is read.
#pragma once

#include <cstdint>

#include "kernels/exec_context.h"
#include "kernels/weight_view.h"

namespace dsv2 {

struct EmbeddingArgs {
  WeightView table;              // [rows, dim]
  const int32_t* ids = nullptr;  // [n], each in [0, table.rows): validated by the caller
  int64_t n = 0;
  void* out = nullptr;  // [n, dim] activation dtype, dense
};

namespace cpu {
void EmbeddingLookup(const CpuContext& ctx, const EmbeddingArgs& args);
}
namespace cuda {
void EmbeddingLookup(CudaContext& ctx, const EmbeddingArgs& args);
}

inline void EmbeddingLookup(const ExecContext& ctx, const EmbeddingArgs& args) {
  if (ctx.on_cuda()) return cuda::EmbeddingLookup(ctx.cuda(), args);
  cpu::EmbeddingLookup(ctx.cpu(), args);
}

}  // namespace dsv2
