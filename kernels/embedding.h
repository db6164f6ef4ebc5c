// Embedding lookup: out[t, :] = float(table[ids[t], :]). table is a [vocab, dim] weight.
#pragma once

#include <cstdint>

#include "kernels/weight_view.h"

namespace dsv2 {

// ids must be in [0, table.rows); the caller validates request input before this point.
void EmbeddingLookup(const WeightView& table, const int32_t* ids, int64_t n, float* out);

}  // namespace dsv2
