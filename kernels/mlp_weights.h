// The weights of one gated MLP — a dense layer's MLP, the shared experts, or one routed expert:
//   out = down(silu(gate(x)) · up(x))
#pragma once

#include "kernels/weight_view.h"

namespace dsv2 {

struct MlpWeights {
  WeightView gate;  // [width, hidden]
  WeightView up;    // [width, hidden]
  WeightView down;  // [hidden, width]
};

}  // namespace dsv2
