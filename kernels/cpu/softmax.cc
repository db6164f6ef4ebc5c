#include "kernels/softmax.h"

#include <cmath>

#include "kernels/check.h"

namespace dsv2 {

void SoftmaxRows(float* x, int64_t rows, int64_t cols, int64_t stride) {
  DSV2_CHECK(rows >= 0 && cols >= 0);
  if (rows == 0 || cols == 0) return;
  DSV2_CHECK(x != nullptr && (rows == 1 || stride >= cols));
  for (int64_t r = 0; r < rows; ++r) {
    float* row = x + r * stride;  // [cols]
    float max_v = row[0];
    for (int64_t i = 1; i < cols; ++i) max_v = std::fmax(max_v, row[i]);
    float sum = 0.0f;
    for (int64_t i = 0; i < cols; ++i) {
      row[i] = std::exp(row[i] - max_v);
      sum += row[i];
    }
    const float inv_sum = 1.0f / sum;
    for (int64_t i = 0; i < cols; ++i) row[i] *= inv_sum;
  }
}

}  // namespace dsv2
