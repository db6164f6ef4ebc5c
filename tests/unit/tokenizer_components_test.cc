// Component options against HF (variants of the V2-style tokenizer), load errors, and the
// Oniguruma -> PCRE2 regex translation.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "coordinator/tokenizer/regex.h"
#include "coordinator/tokenizer/tokenizer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/tokenizer_test_util.h"

namespace dsv2 {
namespace {

using ::dsv2::testing::IdsOf;
using ::dsv2::testing::ReadJsonLines;
using ::dsv2::testing::TokenizerDataDir;
using ::testing::HasSubstr;

const Json& V2Json() {
  static const Json* v = [] {
    auto parsed = ParseJsonFile(TokenizerDataDir() + "/v2/tokenizer.json");
    EXPECT_TRUE(parsed.ok()) << parsed.status();
    return new Json(parsed.ok() ? *parsed : Json());
  }();
  return *v;
}

// The V2-style tokenizer.json with some members replaced.
Json Patched(const Json& patch) {
  Json root = V2Json();
  for (const auto& [key, value] : patch.items()) {
    if (key != "merges_as_pairs") {
      root[key] = value;
      continue;
    }
    Json pairs = Json::array();
    for (const Json& m : root["model"]["merges"]) {
      const std::string& s = m.get_ref<const std::string&>();
      const size_t sp = s.find(' ');
      pairs.push_back(Json::array({s.substr(0, sp), s.substr(sp + 1)}));
    }
    root["model"]["merges"] = std::move(pairs);
  }
  return root;
}

Json PatchOf(const std::string& key, const std::string& json) {
  return Json::object({{key, *ParseJson(json)}});
}

TEST(TokenizerComponentsTest, VariantsMatchHf) {
  const std::vector<Json> corpus = ReadJsonLines(TokenizerDataDir() + "/corpus.jsonl");
  const std::vector<Json> variants = ReadJsonLines(TokenizerDataDir() + "/v2/variants.jsonl");
  ASSERT_GE(variants.size(), 10u);
  size_t checked = 0;
  for (const Json& v : variants) {
    const std::string& name = v.at("name").get<std::string>();
    auto tok = Tokenizer::FromJson(Patched(v.at("patch")), nullptr);
    ASSERT_TRUE(tok.ok()) << name << ": " << tok.status();
    for (const Json& c : v.at("cases")) {
      const std::string& text = corpus.at(c.at("i").get<int64_t>()).at("text").get<std::string>();
      auto ids = (*tok)->Encode(text, false);
      ASSERT_TRUE(ids.ok()) << name << ": " << ids.status();
      EXPECT_EQ(*ids, IdsOf(c.at("ids"))) << name << " on '" << text << "'";
      const Json* decoded = JsonMember(c, "decoded");
      EXPECT_EQ(*(*tok)->Decode(*ids, false),
                decoded ? decoded->get_ref<const std::string&>() : text)
          << name;
      ++checked;
    }
  }
  std::printf("[v2 variants] %zu variants, %zu strings checked\n", variants.size(), checked);
}

TEST(TokenizerComponentsTest, UnknownComponentTypesAreNamed) {
  struct Case {
    std::string key, json, type;
  };
  const std::vector<Case> cases = {
      {"normalizer", R"({"type": "NFKC"})", "NFKC"},
      {"pre_tokenizer", R"({"type": "Sequence", "pretokenizers": [{"type": "Metaspace"}]})",
       "Metaspace"},
      {"decoder", R"({"type": "WordPiece"})", "WordPiece"},
      {"post_processor", R"({"type": "RobertaProcessing"})", "RobertaProcessing"},
      {"model", R"({"type": "Unigram", "vocab": []})", "Unigram"},
  };
  for (const Case& c : cases) {
    auto tok = Tokenizer::FromJson(Patched(PatchOf(c.key, c.json)), nullptr);
    ASSERT_FALSE(tok.ok()) << c.key;
    EXPECT_THAT(tok.status().message(), HasSubstr("tokenizer.json: " + c.key)) << tok.status();
    EXPECT_THAT(tok.status().message(), HasSubstr("'" + c.type + "'")) << tok.status();
  }
  auto bl_first = Tokenizer::FromJson(
      Patched(PatchOf("pre_tokenizer", R"({"type": "Sequence", "pretokenizers": [
          {"type": "ByteLevel", "use_regex": false}, {"type": "Digits"}]})")),
      nullptr);
  EXPECT_THAT(bl_first.status().message(), HasSubstr("after ByteLevel"));
  auto bad_merge = Tokenizer::FromJson(
      Patched(PatchOf("model", R"({"type": "BPE", "vocab": {"a": 0}, "merges": ["a b c"]})")),
      nullptr);
  EXPECT_THAT(bad_merge.status().message(), HasSubstr("merge 0"));
}

TEST(TokenizerComponentsTest, LoadErrorsNameTheFile) {
  const auto dir = std::filesystem::temp_directory_path() / "dsv2_tokenizer_load_test";
  std::filesystem::create_directories(dir);
  auto missing = Tokenizer::Load(dir.string());
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(missing.status().message(), HasSubstr("tokenizer.json"));
  std::ofstream(dir / "tokenizer.json") << "{\"model\": {\"type\": \"BPE\",";
  auto malformed = Tokenizer::Load(dir.string());
  ASSERT_FALSE(malformed.ok());
  EXPECT_THAT(malformed.status().message(), HasSubstr("tokenizer.json"));
  std::filesystem::copy_file(TokenizerDataDir() + "/v2/tokenizer.json", dir / "tokenizer.json",
                             std::filesystem::copy_options::overwrite_existing);
  std::ofstream(dir / "tokenizer_config.json") << "{\"add_bos_token\": tru";
  auto bad_config = Tokenizer::Load(dir.string());
  ASSERT_FALSE(bad_config.ok());
  EXPECT_THAT(bad_config.status().message(), HasSubstr("tokenizer_config.json"));
  std::filesystem::remove_all(dir);
}

TEST(TokenizerComponentsTest, RegexFollowsOniguruma) {
  using tokenizer::Regex;
  auto find = [](const char* pattern, std::string_view text) {
    auto re = Regex::Compile(pattern);
    EXPECT_TRUE(re.ok()) << re.status();
    size_t b = 0, e = 0;
    return (*re)->Find(text, 0, &b, &e) == 1 ? std::string(text.substr(b, e - b)) : "<none>";
  };
  EXPECT_EQ(find("\\s+", "a\xE1\xA0\x8E b"), " ");               // U+180E is not \s
  EXPECT_EQ(find("\\s+", "a\xE3\x80\x80z"), "\xE3\x80\x80");     // U+3000 is
  EXPECT_EQ(find("\\p{L}+", "1\xEA\x9F\x8B!"), "\xEA\x9F\x8B");  // U+A7CB (Unicode 16)
  EXPECT_EQ(find("\\h+", "xx3fG"), "3f");                        // \h is a hex digit
  EXPECT_EQ(find("\\s+$", "a \nb"), " ");                        // $ ends a line
  EXPECT_EQ(find("[^\\S\\n]+", "a\t \nb"), "\t ");
  EXPECT_EQ(find("\\u0041+", "xAAy"), "AA");
  EXPECT_FALSE(Regex::Compile("[a-z&&[^aeiou]]").ok());
  EXPECT_FALSE(Regex::Compile("(unclosed").ok());
  auto slow = Regex::Compile("(a+)+$");
  ASSERT_TRUE(slow.ok());
  size_t b, e;
  const std::string evil(5000, 'a');
  EXPECT_LE((*slow)->Find(evil + "!", 0, &b, &e), 0);  // bounded, never hangs
}

}  // namespace
}  // namespace dsv2
