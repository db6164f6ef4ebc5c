// --quantize: a checkpoint's float weights quantized at load into block formats
// (kernels/quant_blocks.h), the CPU then reading them with integer dot products.
//
// Schemes: one format for every matrix ("q8_0", "q4_k", "q6_k", "q5_0", "q5_k", "q4_0",
// "iq4_nl"), or "q4_k_m": Q4_K, with Q6_K for lm_head and for the down projections of the first
// and last eighth of the layers and every third layer between (where llama.cpp's Q4_K_M puts
// its extra bits too). A matrix whose rows are not whole 256-element blocks takes a 32-element
// format instead: Q4_K → Q5_0, Q5_K → Q5_0, Q6_K → Q8_0 (V2-Lite's expert width 1,408 and dense
// width 10,944 are such rows, for the down projections).
//
// Quantized: every attention projection but W_UK/W_UV, the dense MLPs, shared and routed
// experts, lm_head. Kept as stored: the embedding (a row lookup), the router gate, the norms,
// and W_UKᵀ/W_UV (kv_b_proj split, 4 MB a layer; W_UKᵀ has 128-element rows).
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "common/model_config.h"
#include "coordinator/model/model_weights.h"
#include "kernels/dtype.h"

namespace dsv2 {

class QuantScheme {
 public:
  // "" or "none": no scheme (the weights as stored). An unknown name: INVALID_ARGUMENT naming
  // the accepted ones.
  static absl::StatusOr<QuantScheme> Parse(const std::string& name);

  bool enabled() const { return base_ != DType::kF32; }
  std::string name() const;  // "q4_k_m", "q8_0", ...; "none" when not enabled
  // The format of a [rows, cols] matrix; `down`: a down projection of layer `layer` of
  // `layers`; `lm_head`: the output projection.
  DType For(int64_t cols, bool down, bool lm_head, int64_t layer, int64_t layers) const;

 private:
  DType base_ = DType::kF32;  // kF32: no scheme
  bool mixed_ = false;        // q4_k_m
};

struct QuantizedBytes {
  int64_t before = 0;  // the matrices as stored
  int64_t after = 0;   // quantized
};

// Quantizes the matrices the scheme covers into w.host_storage and points their views there,
// on `threads` threads (<= 0: every core), with a progress line on stderr every 2 s.
absl::StatusOr<QuantizedBytes> QuantizeModelWeights(const ModelConfig& config,
                                                    const QuantScheme& scheme, int threads,
                                                    ModelWeights& w);

}  // namespace dsv2
