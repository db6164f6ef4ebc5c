// The fuzz targets of tests/fuzz/parser_targets.h over the committed seed corpus and over every
// input that once broke them (tests/fuzz/regressions/<target>/): each must run to the end
// without an invariant failing (a failure aborts the test with the message). scripts/fuzz.sh
// runs the same targets under libFuzzer and the sanitizers.
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "common/safetensors.h"
#include "gtest/gtest.h"
#include "tests/fuzz/parser_targets.h"
#include "tests/test_data_dir.h"

namespace dsv2 {
namespace {

namespace fs = std::filesystem;

std::vector<fs::path> Inputs(const std::string& target) {
  std::vector<fs::path> files;
  const fs::path fuzz = fs::path(TestDataDir()).parent_path() / "fuzz";
  for (const char* kind : {"corpus", "regressions"}) {
    const fs::path dir = fuzz / kind / target;
    if (!fs::is_directory(dir)) continue;
    for (const auto& e : fs::directory_iterator(dir)) files.push_back(e.path());
  }
  return files;
}

class FuzzRegressionTest : public ::testing::TestWithParam<std::string> {};

TEST_P(FuzzRegressionTest, EveryKeptInputRunsClean) {
  const fuzz::Target target = fuzz::FindTarget(GetParam());
  ASSERT_NE(target, nullptr);
  const std::vector<fs::path> inputs = Inputs(GetParam());
  ASSERT_FALSE(inputs.empty()) << "no seed corpus for " << GetParam();
  for (const fs::path& p : inputs) {
    SCOPED_TRACE(p.string());
    std::ifstream in(p, std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    target(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  }
}

INSTANTIATE_TEST_SUITE_P(Targets, FuzzRegressionTest,
                         ::testing::Values("safetensors", "gguf", "config_json", "tokenizer_json",
                                           "tcp_frame", "generate_request", "http_request"));

// The first finding: a shape whose element count overflows int64 must be refused by name, not
// wrap around to match a zero-byte span.
TEST(SafetensorsHostileTest, OverflowingShapeIsRefused) {
  const std::vector<fs::path> inputs = Inputs("safetensors");
  int seen = 0;
  for (const fs::path& p : inputs) {
    if (p.filename().string().rfind("shape_overflow", 0) != 0) continue;
    std::ifstream in(p, std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    absl::StatusOr<std::unique_ptr<SafetensorsFile>> f = SafetensorsFile::FromBytes(bytes, "x");
    ASSERT_FALSE(f.ok()) << p;
    EXPECT_EQ(f.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(f.status().message().find("tensor 'w'"), std::string::npos) << f.status();
    ++seen;
  }
  EXPECT_EQ(seen, 2);
}

}  // namespace
}  // namespace dsv2
