// A GGUF file's own tokenizer: the DeepSeek-V2 and V3 tokenizer fixtures written into GGUF keys
// (as dsv2-quantize writes them) and read back encode the whole tokenizer corpus
// (tests/data/tokenizer/corpus.jsonl) id for id as the tokenizer.json they came from, with and
// without special tokens, and decode the same. The V3 fixture (DeepSeek's own tokenizer) also
// without our keys, as in a llama.cpp file: the pre-tokenizer known by its tokenizer.ggml.pre
// name, added tokens by type (the V2 fixture's added tokens carry lstrip / rstrip / single_word
// test flags GGUF has no key for). An unknown name is refused by name.
#include "coordinator/tokenizer/gguf_tokenizer.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/gguf.h"
#include "common/gguf_writer.h"
#include "common/json_document.h"
#include "coordinator/model/gguf_export.h"
#include "tests/unit/tokenizer_test_util.h"

namespace dsv2 {
namespace {

namespace fs = std::filesystem;

using testing::ReadJsonLines;
using testing::TokenizerDataDir;

std::vector<std::string> Corpus() {
  std::vector<std::string> texts;
  for (const Json& row : ReadJsonLines(TokenizerDataDir() + "/corpus.jsonl")) {
    texts.push_back(row.at("text").get<std::string>());
  }
  return texts;
}

// A GGUF holding only the tokenizer keys of `dir`, less the keys named in `drop`; `pre`
// replaces tokenizer.ggml.pre when set.
std::string WriteTokenizerGguf(const std::string& dir, int64_t vocab, const std::string& out,
                               const std::vector<std::string>& drop, const std::string& pre) {
  GgufWriter full;
  ModelConfig c;
  c.vocab_size = vocab;
  EXPECT_TRUE(AddGgufTokenizer(dir, c, full).ok());
  auto parsed = GgufFile::FromBytes(full.Serialize(), "tokenizer.gguf");
  EXPECT_TRUE(parsed.ok()) << parsed.status();
  GgufWriter w;
  for (const auto& [key, v] : (*parsed)->metadata()) {
    if (std::find(drop.begin(), drop.end(), key) != drop.end()) continue;
    if (key == "tokenizer.ggml.pre" && !pre.empty()) {
      w.AddString(key, pre);
    } else if (v.type == GgufValueType::kString) {
      w.AddString(key, v.s);
    } else if (v.type == GgufValueType::kU32) {
      w.AddU32(key, static_cast<uint32_t>(v.i));
    } else if (v.type == GgufValueType::kBool) {
      w.AddBool(key, v.i != 0);
    } else if (v.array_type == GgufValueType::kString) {
      w.AddStrings(key, v.strings);
    } else {
      w.AddI32s(key, std::vector<int32_t>(v.ints.begin(), v.ints.end()));
    }
  }
  EXPECT_TRUE(w.Write(out).ok());
  return out;
}

class GgufTokenizerTest : public ::testing::TestWithParam<std::string> {};

TEST_P(GgufTokenizerTest, EncodesTheCorpusAsItsTokenizerJson) {
  const std::string dir = TokenizerDataDir() + "/" + GetParam();
  auto want = Tokenizer::Load(dir);
  ASSERT_TRUE(want.ok()) << want.status();
  const std::string tmp =
      (fs::temp_directory_path() / absl::StrCat("dsv2_gguf_tok_", getpid())).string();
  fs::create_directories(tmp);
  const std::vector<std::string> texts = Corpus();
  ASSERT_GT(texts.size(), 1000u);
  for (bool ours : {true, false}) {
    if (!ours && GetParam() == "v2") continue;
    std::vector<std::string> drop;
    if (!ours) drop = {"dsv2.tokenizer.pre_tokenizer", "dsv2.tokenizer.added_tokens"};
    const std::string file = WriteTokenizerGguf(
        dir, (*want)->vocab_size(), tmp + (ours ? "/ours.gguf" : "/named.gguf"), drop, "");
    auto g = GgufModel::Open(file);
    ASSERT_TRUE(g.ok()) << g.status();
    auto got = TokenizerFromGguf(**g);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ((*got)->vocab_size(), (*want)->vocab_size());
    for (const std::string& text : texts) {
      for (bool special : {false, true}) {
        auto a = (*got)->Encode(text, special);
        auto b = (*want)->Encode(text, special);
        ASSERT_TRUE(a.ok() && b.ok());
        ASSERT_EQ(*a, *b) << (ours ? "our key" : "by name") << ", special " << special << ": "
                          << text;
        ASSERT_EQ(*(*got)->Decode(*a, false), *(*want)->Decode(*b, false)) << text;
      }
    }
  }
  // A pre-tokenizer known neither by our key nor by name.
  const std::string file = WriteTokenizerGguf(dir, (*want)->vocab_size(), tmp + "/other.gguf",
                                              {"dsv2.tokenizer.pre_tokenizer"}, "qwen2");
  auto g = GgufModel::Open(file);
  ASSERT_TRUE(g.ok());
  auto refused = TokenizerFromGguf(**g);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("'qwen2'"), std::string_view::npos);
  fs::remove_all(tmp);
}

INSTANTIATE_TEST_SUITE_P(DeepSeek, GgufTokenizerTest, ::testing::Values("v2", "v3"));

}  // namespace
}  // namespace dsv2
