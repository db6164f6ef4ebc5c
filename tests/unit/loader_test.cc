// Loader errors: each broken checkpoint gives an error naming the culprit, never a crash.
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "absl/strings/str_replace.h"
#include "common/json_document.h"
#include "common/mapped_pages.h"
#include "common/safetensors.h"
#include "coordinator/model/deepseek_v2_model.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/util/safetensors_writer.h"

namespace dsv2 {
namespace {

namespace fs = std::filesystem;
using testing::CopyTensors;
using ::testing::HasSubstr;
using testing::SafetensorsBytes;
using testing::TensorToWrite;
using testing::WriteFile;

const std::string kLite = std::string(DSV2_TEST_DATA_DIR) + "/golden/lite";

std::string ReadText(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

// A scratch copy of the lite fixture's config and weights that a test may break.
class LoaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("dsv2_loader_" +
            std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    fs::copy_file(kLite + "/config.json", dir_ / "config.json");
    auto file = SafetensorsFile::Open(kLite + "/model.safetensors");
    ASSERT_TRUE(file.ok()) << file.status();
    tensors_ = CopyTensors(**file);
  }
  void TearDown() override { fs::remove_all(dir_); }

  void WriteWeights(const std::vector<TensorToWrite>& tensors) {
    WriteFile((dir_ / "model.safetensors").string(), SafetensorsBytes(tensors));
  }
  absl::Status Load() { return DeepseekV2Model::Load(dir_.string()).status(); }
  void EditConfig(const std::string& from, const std::string& to) {
    std::string text = ReadText((dir_ / "config.json").string());
    ASSERT_NE(text.find(from), std::string::npos) << from;
    WriteFile((dir_ / "config.json").string(), absl::StrReplaceAll(text, {{from, to}}));
  }

  fs::path dir_;
  std::vector<TensorToWrite> tensors_;
};

TEST_F(LoaderTest, IntactCopyLoads) {
  WriteWeights(tensors_);
  EXPECT_TRUE(Load().ok()) << Load();
}

// The CPU engine maps the pages of the weights it binds at load: ranges sharing pages counted
// once, progress up to the total; nothing to map is trivially done.
TEST(CheckpointPages, PrefaultRangesCoversTheBoundTensorsOnce) {
  absl::StatusOr<std::unique_ptr<Checkpoint>> ckpt = Checkpoint::Open(kLite);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  const TensorInfo* embed = (*ckpt)->Find("model.embed_tokens.weight");
  ASSERT_NE(embed, nullptr);
  const int64_t page = sysconf(_SC_PAGESIZE);
  const auto begin = reinterpret_cast<uintptr_t>(embed->data);
  const int64_t bytes = embed->nbytes;
  const int64_t expected =
      static_cast<int64_t>((begin + bytes + page - 1) / page * page - begin / page * page);
  int64_t last = 0, calls = 0;
  // The tensor whole, its first half, and its second half: the same pages.
  const bool mapped =
      PrefaultRanges({{embed->data, bytes},
                      {embed->data, bytes / 2},
                      {static_cast<const uint8_t*>(embed->data) + bytes / 2, bytes - bytes / 2}},
                     [&](int64_t done, int64_t total) {
                       EXPECT_GT(done, last);
                       EXPECT_EQ(total, expected);
                       last = done;
                       ++calls;
                     });
  if (!mapped) GTEST_SKIP() << "MADV_POPULATE_READ refused (a kernel before Linux 5.14)";
  EXPECT_EQ(last, expected);
  EXPECT_GE(calls, 1);
  EXPECT_TRUE(PrefaultRanges({}, {}));
  EXPECT_TRUE(PrefaultRanges({{nullptr, 100}, {embed->data, 0}}, {}));
}

TEST_F(LoaderTest, MissingTensorIsNamed) {
  std::erase_if(tensors_, [](const TensorToWrite& t) {
    return t.name == "model.layers.1.mlp.experts.7.up_proj.weight";
  });
  WriteWeights(tensors_);
  const absl::Status s = Load();
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(s.message(), HasSubstr("'model.layers.1.mlp.experts.7.up_proj.weight' is missing"));
}

TEST_F(LoaderTest, WrongShapeNamesTensorFileAndShapes) {
  for (TensorToWrite& t : tensors_) {
    if (t.name == "model.layers.0.self_attn.kv_b_proj.weight") std::swap(t.shape[0], t.shape[1]);
  }
  WriteWeights(tensors_);
  const absl::Status s = Load();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("model.layers.0.self_attn.kv_b_proj.weight"));
  EXPECT_THAT(s.message(), HasSubstr("model.safetensors"));
  EXPECT_THAT(s.message(), HasSubstr("expected ["));
}

TEST_F(LoaderTest, WrongDtypeIsNamed) {
  for (TensorToWrite& t : tensors_) {
    if (t.name == "model.norm.weight") {
      t.dtype = "I16";  // same byte size as BF16
    }
  }
  WriteWeights(tensors_);
  const absl::Status s = Load();
  EXPECT_THAT(s.message(), HasSubstr("'model.norm.weight'"));
  EXPECT_THAT(s.message(), HasSubstr("dtype I16"));
}

TEST_F(LoaderTest, TruncatedFileIsReported) {
  const std::string bytes = SafetensorsBytes(tensors_);
  WriteFile((dir_ / "model.safetensors").string(), bytes.substr(0, bytes.size() - 1000));
  const absl::Status s = Load();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("truncated file"));
  EXPECT_THAT(s.message(), HasSubstr("model.safetensors"));
}

TEST_F(LoaderTest, FileShorterThanHeaderLength) {
  WriteFile((dir_ / "model.safetensors").string(), "abc");
  EXPECT_THAT(Load().message(), HasSubstr("truncated file"));
}

TEST_F(LoaderTest, CorruptHeaderIsReported) {
  std::string bytes = SafetensorsBytes(tensors_);
  bytes[8] = '[';  // the header JSON no longer parses as an object
  bytes[9] = '!';
  WriteFile((dir_ / "model.safetensors").string(), bytes);
  const absl::Status s = Load();
  EXPECT_THAT(s.message(), HasSubstr("corrupt safetensors header"));
}

TEST_F(LoaderTest, ImplausibleHeaderLength) {
  std::string bytes = SafetensorsBytes(tensors_);
  bytes[7] = '\x7f';
  WriteFile((dir_ / "model.safetensors").string(), bytes);
  EXPECT_THAT(Load().message(), HasSubstr("corrupt safetensors header"));
}

TEST_F(LoaderTest, OffsetsDisagreeingWithShape) {
  std::string bytes = SafetensorsBytes({{"model.norm.weight", "BF16", {4}, std::string(6, '\0')}});
  WriteFile((dir_ / "model.safetensors").string(), bytes);
  const absl::Status s = Load();
  EXPECT_THAT(s.message(), HasSubstr("tensor 'model.norm.weight'"));
  EXPECT_THAT(s.message(), HasSubstr("needs 8"));
}

TEST_F(LoaderTest, BadConfigValueNamesField) {
  WriteWeights(tensors_);
  EditConfig("\"num_experts_per_tok\": 6", "\"num_experts_per_tok\": \"six\"");
  const absl::Status s = Load();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("config.json"));
  EXPECT_THAT(s.message(), HasSubstr("'num_experts_per_tok'"));
}

TEST_F(LoaderTest, MalformedConfigJsonGivesPosition) {
  WriteWeights(tensors_);
  WriteFile((dir_ / "config.json").string(), "{\"hidden_size\": 128,\n  oops}");
  const absl::Status s = Load();
  EXPECT_THAT(s.message(), HasSubstr("config.json"));
  EXPECT_THAT(s.message(), HasSubstr("line 2"));
}

TEST_F(LoaderTest, ShardedCheckpointWithIndex) {
  // Split the tensors over two files with an index, named as real checkpoints are.
  std::vector<TensorToWrite> a, b;
  std::string map;
  for (size_t i = 0; i < tensors_.size(); ++i) {
    const bool first = i % 2 == 0;
    (first ? a : b).push_back(tensors_[i]);
    map += absl::StrCat(i ? "," : "", "\"", tensors_[i].name, "\":\"model-0000", first ? 1 : 2,
                        "-of-000002.safetensors\"");
  }
  WriteFile((dir_ / "model-00001-of-000002.safetensors").string(), SafetensorsBytes(a));
  WriteFile((dir_ / "model-00002-of-000002.safetensors").string(), SafetensorsBytes(b));
  WriteFile((dir_ / "model.safetensors.index.json").string(),
            "{\"metadata\":{},\"weight_map\":{" + map + "}}");
  EXPECT_TRUE(Load().ok()) << Load();

  // An index entry whose file lacks the tensor is named.
  b.pop_back();
  const std::string dropped =
      tensors_.size() % 2 == 0 ? tensors_.back().name : tensors_[tensors_.size() - 2].name;
  WriteFile((dir_ / "model-00002-of-000002.safetensors").string(), SafetensorsBytes(b));
  const absl::Status s = Load();
  EXPECT_THAT(s.message(), HasSubstr("'" + dropped + "'"));
  EXPECT_THAT(s.message(), HasSubstr("model-00002-of-000002.safetensors"));
}

TEST_F(LoaderTest, MissingDirectory) {
  const absl::Status s = DeepseekV2Model::Load((dir_ / "nope").string()).status();
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(s.message(), HasSubstr("nope"));
}

}  // namespace
}  // namespace dsv2
