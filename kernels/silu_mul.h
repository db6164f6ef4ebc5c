// The gated MLP's activation: out[i] = silu(gate[i]) · up[i], silu(g) = g / (1 + exp(−g)).
// out may alias gate or up.
#pragma once

#include <cstdint>

namespace dsv2 {

void SiluMul(const float* gate, const float* up, int64_t n, float* out);

}  // namespace dsv2
