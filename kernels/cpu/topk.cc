#include "kernels/topk.h"

#include <cmath>

#include "kernels/check.h"

namespace dsv2 {
namespace {

// Whether value a at index ia ranks before value b at index ib: larger first (NaN largest, as
// torch.topk), ties to the lower index.
bool RanksBefore(float a, int64_t ia, float b, int64_t ib) {
  const bool a_nan = std::isnan(a), b_nan = std::isnan(b);
  if (a_nan || b_nan) return a_nan && (!b_nan || ia < ib);
  return a > b || (a == b && ia < ib);
}

}  // namespace

// Insertion into the output lists, kept sorted: O(n·k), no scratch memory.
void TopK(const float* values, int64_t n, int64_t k, int32_t* out_index, float* out_value) {
  DSV2_CHECK(k >= 0 && k <= n);
  if (k == 0) return;
  DSV2_CHECK(values != nullptr && out_index != nullptr && out_value != nullptr);
  int64_t size = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float v = values[i];
    if (size == k && !RanksBefore(v, i, out_value[k - 1], out_index[k - 1])) continue;
    int64_t pos = size < k ? size++ : k - 1;
    for (; pos > 0 && RanksBefore(v, i, out_value[pos - 1], out_index[pos - 1]); --pos) {
      out_value[pos] = out_value[pos - 1];
      out_index[pos] = out_index[pos - 1];
    }
    out_value[pos] = v;
    out_index[pos] = static_cast<int32_t>(i);
  }
}

}  // namespace dsv2
