#include "common/gated_mlp.h"

#include "kernels/matmul.h"
#include "kernels/silu_mul.h"

namespace dsv2 {

void GatedMlp(const CpuContext& ctx, const MlpWeights& w, const GatedMlpArgs& a,
              std::vector<float>& scratch) {
  const int64_t hidden = w.gate.cols;
  const int64_t width = w.gate.rows;
  scratch.resize(2 * a.n * width);
  float* gate = scratch.data();    // [n, width]
  float* up = gate + a.n * width;  // [n, width]
  MatMul(ctx, {.x = a.x, .x_stride = hidden, .n = a.n, .w = w.gate, .y = gate, .y_stride = width});
  MatMul(ctx, {.x = a.x, .x_stride = hidden, .n = a.n, .w = w.up, .y = up, .y_stride = width});
  SiluMul(gate, up, a.n * width, gate);  // [n, width]
  MatMul(ctx, {.x = gate,
               .x_stride = width,
               .n = a.n,
               .w = w.down,
               .y = a.out,
               .y_stride = hidden,
               .accumulate = a.accumulate});
}

}  // namespace dsv2
