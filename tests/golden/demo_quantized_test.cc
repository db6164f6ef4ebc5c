// Quantized weights on the trained demo model (assets/demo-model): held-out perplexity of Q8_0
// within 0.5% of bf16 and of Q4_K_M within 5% (issue 30's quality bars), each both quantized at
// load (--quantize) and through a GGUF file written by dsv2-quantize's exporter; the unquantized
// float32 and bf16 runs beside them. A trained model's sharp router and peaked logits show
// what quantization costs where random weights cannot.
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/safetensors.h"
#include "coordinator/model/deepseek_v2_model.h"
#include "coordinator/model/gguf_export.h"
#include "gtest/gtest.h"
#include "tests/golden/golden_util.h"
#include "tests/test_data_dir.h"

namespace dsv2 {
namespace {

namespace fs = std::filesystem;

class DemoQuantizedTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new fs::path(fs::temp_directory_path() /
                        absl::StrCat("dsv2_demo_quantized_", static_cast<int64_t>(getpid())));
    fs::create_directories(*dir_);
  }
  static void TearDownTestSuite() {
    fs::remove_all(*dir_);
    delete dir_;
  }

  // Held-out perplexity over the fixture's windows (transformers' tokens).
  static double Perplexity(const DeepseekV2Model& model) {
    auto ref = SafetensorsFile::Open(TestDataDir() + "/demo/reference.safetensors");
    EXPECT_TRUE(ref.ok()) << ref.status();
    const TensorInfo& ids_t = (*ref)->tensors().at("heldout_ids");
    const std::vector<int32_t> all = Ints(ids_t);
    const int64_t windows = ids_t.shape[0], len = ids_t.shape[1];
    CpuContext cpu(2, DetectCpuIsa(), model.dtype());
    ExecContext ctx(cpu);
    double sum = 0;
    for (int64_t w = 0; w < windows; ++w) {
      sum += WindowNll(model, ctx,
                       std::vector<int32_t>(all.begin() + w * len, all.begin() + (w + 1) * len));
    }
    return std::exp(sum / static_cast<double>(windows));
  }

  static double AtLoad(DType dtype, const std::string& scheme) {
    auto q = QuantScheme::Parse(scheme);
    EXPECT_TRUE(q.ok());
    auto model = DeepseekV2Model::Load(TestDemoModelDir(), {},
                                       {.device = Device::kCpu, .dtype = dtype, .quantize = *q});
    EXPECT_TRUE(model.ok()) << model.status();
    return model.ok() ? Perplexity(**model) : NAN;
  }

  static double ThroughGguf(DType dtype, const std::string& scheme) {
    auto q = QuantScheme::Parse(scheme);
    EXPECT_TRUE(q.ok());
    const std::string out = (*dir_ / (scheme + ".gguf")).string();
    if (!fs::exists(out)) {
      const absl::Status s =
          ExportGguf({.model_dir = TestDemoModelDir(), .out = out, .scheme = *q, .threads = 2});
      EXPECT_TRUE(s.ok()) << s;
    }
    auto model = DeepseekV2Model::Load(out, {}, {.device = Device::kCpu, .dtype = dtype});
    EXPECT_TRUE(model.ok()) << model.status();
    return model.ok() ? Perplexity(**model) : NAN;
  }

  static fs::path* dir_;
};

fs::path* DemoQuantizedTest::dir_ = nullptr;

TEST_F(DemoQuantizedTest, Q8_0WithinHalfAPercentAndQ4_K_MWithinFivePercentOfBf16) {
  for (DType dtype : {DType::kF32, DType::kBF16}) {
    const double base = AtLoad(dtype, "none");
    const double q8 = AtLoad(dtype, "q8_0"), q4 = AtLoad(dtype, "q4_k_m");
    const double q8_gguf = ThroughGguf(dtype, "q8_0"), q4_gguf = ThroughGguf(dtype, "q4_k_m");
    std::printf(
        "demo model held-out perplexity, %s activations: as stored %.4f; Q8_0 %.4f (%+.2f%%), "
        "GGUF %.4f (%+.2f%%); Q4_K_M %.4f (%+.2f%%), GGUF %.4f (%+.2f%%)\n",
        PrecisionName(dtype), base, q8, 100 * (q8 / base - 1), q8_gguf, 100 * (q8_gguf / base - 1),
        q4, 100 * (q4 / base - 1), q4_gguf, 100 * (q4_gguf / base - 1));
    // The bars are against bf16 (issue 30); float32 runs beside bf16 and is held to the same.
    for (double v : {q8, q8_gguf}) EXPECT_NEAR(v / base, 1.0, 0.005) << PrecisionName(dtype);
    for (double v : {q4, q4_gguf}) EXPECT_NEAR(v / base, 1.0, 0.05) << PrecisionName(dtype);
    EXPECT_NE(q4, base) << "the weights were not quantized";
  }
}

}  // namespace
}  // namespace dsv2
