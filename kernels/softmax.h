// Numerically stable softmax over each row, in place: x[r, :] ← exp(x − max) / Σ exp(x − max).
#pragma once

#include <cstdint>

namespace dsv2 {

void SoftmaxRows(float* x, int64_t rows, int64_t cols, int64_t stride);

}  // namespace dsv2
