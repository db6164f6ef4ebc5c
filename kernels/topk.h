// Top-k of one row: the k largest values in descending order with their indices.
// Ties go to the lower index. k <= n.
#pragma once

#include <cstdint>

namespace dsv2 {

void TopK(const float* values, int64_t n, int64_t k, int32_t* out_index, float* out_value);

}  // namespace dsv2
