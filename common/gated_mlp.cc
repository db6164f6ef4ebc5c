#include "common/gated_mlp.h"

#include "kernels/matmul.h"
#include "kernels/silu_mul.h"

namespace dsv2 {

void GatedMlp(const ExecContext& ctx, const MlpWeights& w, const GatedMlpArgs& a) {
  const int64_t hidden = w.gate.cols;
  const int64_t width = w.gate.rows;
  WorkspaceScope scope(ctx.workspace());
  void* gate = ctx.workspace().Alloc(ctx.act_dtype(), a.n * width);  // [n, width]
  void* up = ctx.workspace().Alloc(ctx.act_dtype(), a.n * width);    // [n, width]
  MatMul(ctx, {.x = a.x, .x_stride = hidden, .n = a.n, .w = w.gate, .y = gate, .y_stride = width});
  MatMul(ctx, {.x = a.x, .x_stride = hidden, .n = a.n, .w = w.up, .y = up, .y_stride = width});
  SiluMul(ctx, {.gate = gate,
                .up = up,
                .out = gate,
                .rows = a.n,
                .width = width,
                .gate_stride = width,
                .up_stride = width,
                .out_stride = width});
  MatMul(ctx, {.x = gate,
               .x_stride = width,
               .n = a.n,
               .w = w.down,
               .y = a.out,
               .y_stride = hidden,
               .accumulate = a.accumulate});
}

}  // namespace dsv2
