// A read-only view of a 2-D weight as stored in the checkpoint: row-major [rows, cols]
// (PyTorch's [out_features, in_features]), element type F32, F16 or BF16, or a row of
// cols / BlockElements quantized blocks (Q8_0, Q4_K, ...: kernels/quant_blocks.h). Not owning:
// the bytes usually live in an mmap'ed safetensors or GGUF file.
#pragma once

#include <cstdint>

#include "kernels/dtype.h"

namespace dsv2 {

struct WeightView {
  const void* data = nullptr;
  DType dtype = DType::kBF16;
  int64_t rows = 0;        // out_features
  int64_t cols = 0;        // in_features
  int64_t row_stride = 0;  // elements between rows; == cols for a dense tensor

  const uint8_t* RowPtr(int64_t r) const {
    return static_cast<const uint8_t*>(data) + RowBytes(dtype, r * row_stride);
  }
  // Rows [begin, begin + count) as a view of their own (e.g. one head's slice of kv_b_proj).
  WeightView RowSlice(int64_t begin, int64_t count) const {
    WeightView v = *this;
    v.data = RowPtr(begin);
    v.rows = count;
    return v;
  }
  int64_t bytes() const { return rows * RowBytes(dtype, cols); }
  bool quantized() const { return IsBlockQuantized(dtype); }
};

}  // namespace dsv2
