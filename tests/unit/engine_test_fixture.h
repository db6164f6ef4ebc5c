// EngineTest: the golden lite model loaded once for a suite of InferenceEngine tests, with
// its reference prompts and greedy continuations. On the CPU, or on the GPU in float32 when
// built with DSV2_ENGINE_ON_CUDA (skipped without a CUDA device).
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/safetensors.h"
#include "coordinator/model/deepseek_v2_model.h"
#include "coordinator/serving/inference_engine.h"
#include "gtest/gtest.h"
#include "tests/test_data_dir.h"

namespace dsv2 {

#ifdef DSV2_ENGINE_ON_CUDA
constexpr ModelPlacement kPlacement{.device = Device::kCuda, .dtype = DType::kF32};
#else
constexpr ModelPlacement kPlacement{.device = Device::kCpu, .dtype = DType::kF32};
#endif

struct Reference {
  std::vector<int32_t> prompt;
  std::vector<int32_t> greedy;  // 20 tokens
};

class EngineTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (kPlacement.device == Device::kCuda) {
      const absl::StatusOr<CudaDeviceInfo> gpu = ProbeCudaDevice(0);
      if (!gpu.ok()) {
        skip_reason_ = std::string(gpu.status().message());
        return;
      }
    }
    const std::string dir = TestDataDir() + "/golden/lite";
    model_ = std::move(DeepseekV2Model::Load(dir, {}, kPlacement)).value().release();
    auto ref = SafetensorsFile::Open(dir + "/reference.safetensors");
    const int n = std::stoi((*ref)->metadata().at("num_prompts"));
    for (int i = 0; i < n; ++i) {
      Reference r;
      for (const char* what : {"ids", "greedy_ids"}) {
        const TensorInfo& t = (*ref)->tensors().at(absl::StrCat("prompt.", i, ".", what));
        std::vector<int32_t>& out = std::string(what) == "ids" ? r.prompt : r.greedy;
        for (int64_t j = 0; j < t.numel(); ++j)
          out.push_back(static_cast<const int64_t*>(t.data)[j]);
      }
      refs_.push_back(r);
    }
  }
  static void TearDownTestSuite() { delete model_; }
  void SetUp() override {
    if (model_ == nullptr) GTEST_SKIP() << skip_reason_;
  }

  static GenerationRequest Greedy(const std::vector<int32_t>& prompt, int max_new) {
    GenerationRequest r;
    r.prompt = prompt;
    r.sampling.temperature = 0.0f;
    r.max_new_tokens = max_new;
    r.ignore_eos = true;
    return r;
  }

  // Drains a stream; returns the tokens, and the final event through `last`.
  static std::vector<int32_t> Collect(RequestStream& s, GenerationEvent* last = nullptr) {
    std::vector<int32_t> tokens;
    GenerationEvent e;
    while (true) {
      if (!s.Pop(&e, std::chrono::seconds(30))) {
        ADD_FAILURE() << "no event within 30 s";
        return tokens;
      }
      tokens.insert(tokens.end(), e.tokens.begin(), e.tokens.end());
      if (e.final) break;
    }
    if (last != nullptr) *last = e;
    return tokens;
  }

  static void WaitForFreePages(const InferenceEngine& engine) {
    for (int i = 0; i < 500; ++i) {
      const EngineStats s = engine.Stats();
      if (s.running == 0 && s.waiting == 0 && s.pages_free == s.pages_total) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ADD_FAILURE() << "pages were not returned";
  }

  inline static DeepseekV2Model* model_ = nullptr;
  inline static std::vector<Reference> refs_;
  inline static std::string skip_reason_;
};

}  // namespace dsv2
