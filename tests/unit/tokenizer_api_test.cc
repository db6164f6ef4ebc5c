// The Tokenizer API: special ids, bad input, the incremental detokenizer and chat errors.
#include <string>
#include <thread>
#include <vector>

#include "common/utf8.h"
#include "coordinator/tokenizer/byte_level.h"
#include "coordinator/tokenizer/tokenizer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/tokenizer_test_util.h"

namespace dsv2 {
namespace {

using ::dsv2::testing::IdsOf;
using ::dsv2::testing::ReadJsonLines;
using ::dsv2::testing::TokenizerDataDir;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

const Tokenizer& V3() {
  static const Tokenizer* t = Tokenizer::Load(TokenizerDataDir() + "/v3")->release();
  return *t;
}
const Tokenizer& V2() {
  static const Tokenizer* t = Tokenizer::Load(TokenizerDataDir() + "/v2")->release();
  return *t;
}

TEST(TokenizerApiTest, SpecialIdsAndVocabulary) {
  EXPECT_EQ(V3().bos_id(), 0);
  EXPECT_EQ(V3().eos_id(), 1);
  EXPECT_EQ(V3().vocab_size(), 128815);
  EXPECT_EQ(V3().IdToToken(0), "<｜begin▁of▁sentence｜>");
  EXPECT_EQ(V3().TokenToId("<｜User｜>"), 128803);
  EXPECT_EQ(V3().TokenToId("Hello"), 19923);
  EXPECT_EQ(V3().TokenToId("no such token"), std::nullopt);
  EXPECT_TRUE(V3().IsSpecial(0));
  EXPECT_FALSE(V3().IsSpecial(128803));  // <｜User｜> is an added, non-special token
  EXPECT_THAT(*V3().Encode("Hello world", true), ElementsAre(0, 19923, 2058));
  EXPECT_THAT(*V3().Encode("Hello world", false), ElementsAre(19923, 2058));
  // Special-token strings in the text become their ids, with or without add_special.
  EXPECT_THAT(*V3().Encode("<｜User｜>Hi<｜end▁of▁sentence｜>", false),
              ElementsAre(128803, 23166, 1));
  EXPECT_EQ(V2().bos_id(), 4600);
  EXPECT_EQ(V2().eos_id(), 4601);
}

TEST(TokenizerApiTest, InvalidUtf8IsAClearError) {
  for (const std::string bad :
       {"abc\xFF", "\xC0\xAF", "x\xED\xA0\x80y", "\xF4\x90\x80\x80", "truncated \xE4\xB8"}) {
    auto ids = V3().Encode(bad, false);
    ASSERT_FALSE(ids.ok());
    EXPECT_EQ(ids.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(ids.status().message(), HasSubstr("not valid UTF-8"));
    EXPECT_THAT(ids.status().message(), HasSubstr("offset"));
  }
  EXPECT_TRUE(V3().Encode(std::string("nul \0 inside", 12), false).ok());
}

TEST(TokenizerApiTest, DecodeRejectsIdsOutsideTheVocabulary) {
  EXPECT_EQ(V3().Decode({19923, -1}, false).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(V3().Decode({128815}, false).status().code(), absl::StatusCode::kInvalidArgument);
  // Bytes that do not form UTF-8 become U+FFFD, as in HF.
  const int32_t f0 = *V3().TokenToId("ð");  // the byte 0xF0
  EXPECT_EQ(*V3().Decode({f0}, false), "\xEF\xBF\xBD");
}

// Feeds ids one at a time; checks every chunk is complete UTF-8 and the stream adds up to Decode.
void ExpectStreamMatchesDecode(const Tokenizer& tok, const std::vector<int32_t>& ids,
                               bool skip_special) {
  IncrementalDetokenizer detok(tok, skip_special);
  std::string streamed;
  for (int32_t id : ids) {
    absl::StatusOr<std::string> chunk = detok.Add(id);
    ASSERT_TRUE(chunk.ok()) << chunk.status();
    EXPECT_TRUE(ValidateUtf8(*chunk).ok()) << ::testing::PrintToString(ids);
    streamed += *chunk;
  }
  streamed += detok.Flush();
  EXPECT_EQ(streamed, *tok.Decode(ids, skip_special)) << ::testing::PrintToString(ids);
}

TEST(TokenizerApiTest, IncrementalDetokenizerHoldsPartialCharacters) {
  // One token per byte (the byte-level base tokens), so characters arrive in pieces.
  const std::string text = "ok 😀 héllo 中文 👨‍👩‍👧‍👦!";
  const tokenizer::ByteLevelAlphabet& alphabet = tokenizer::ByteLevelAlphabet::Get();
  std::vector<int32_t> ids;
  for (char c : text) ids.push_back(*V3().TokenToId(alphabet.Encode(std::string(1, c))));
  IncrementalDetokenizer detok(V3(), /*skip_special=*/true);
  std::string joined;
  int empty_chunks = 0;
  for (int32_t id : ids) {
    const std::string chunk = *detok.Add(id);
    EXPECT_TRUE(ValidateUtf8(chunk).ok());
    empty_chunks += chunk.empty();
    joined += chunk;
    EXPECT_EQ(text.compare(0, joined.size(), joined), 0) << "emitted text was revised";
  }
  EXPECT_EQ(detok.Flush(), "");
  EXPECT_EQ(joined, text);
  // Every byte of a multi-byte character but the last yields nothing.
  int continuation_bytes = 0;
  for (char c : text) continuation_bytes += (static_cast<unsigned char>(c) & 0xC0) == 0x80;
  EXPECT_EQ(empty_chunks, continuation_bytes);
  ExpectStreamMatchesDecode(V2(), *V2().Encode(text, true), false);
  ExpectStreamMatchesDecode(V3(), *V3().Encode(text, true), false);
}

TEST(TokenizerApiTest, IncrementalDetokenizerOnArbitraryIds) {
  for (const char* name : {"v2", "v3"}) {
    const Tokenizer& tok = std::string(name) == "v2" ? V2() : V3();
    for (const Json& c : ReadJsonLines(TokenizerDataDir() + "/" + name + "/decode.jsonl")) {
      ExpectStreamMatchesDecode(tok, IdsOf(c.at("ids")), false);
      ExpectStreamMatchesDecode(tok, IdsOf(c.at("ids")), true);
    }
  }
  // A stream that ends inside a character: one U+FFFD at the end, nothing revised.
  IncrementalDetokenizer detok(V3(), false);
  EXPECT_EQ(*detok.Add(*V3().TokenToId("a")), "a");
  EXPECT_EQ(*detok.Add(*V3().TokenToId("ð")), "");
  EXPECT_EQ(detok.Flush(), "\xEF\xBF\xBD");
  EXPECT_FALSE(detok.Add(-5).ok());
}

TEST(TokenizerApiTest, ConcurrentEncodesAgree) {
  const std::vector<Json> corpus = ReadJsonLines(TokenizerDataDir() + "/corpus.jsonl");
  std::vector<std::vector<int32_t>> want;
  for (size_t i = 0; i < corpus.size(); i += 7) {
    want.push_back(*V3().Encode(corpus[i].at("text").get<std::string>(), true));
  }
  std::vector<int> mismatches(4, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (size_t k = 0, i = 0; i < corpus.size(); i += 7, ++k) {
        auto ids = V3().Encode(corpus[i].at("text").get<std::string>(), true);
        mismatches[t] += !ids.ok() || *ids != want[k];
      }
    });
  }
  for (std::thread& th : threads) th.join();
  EXPECT_THAT(mismatches, ElementsAre(0, 0, 0, 0));
}

TEST(TokenizerApiTest, ChatErrors) {
  auto unknown_role = V3().ApplyChatTemplate({{"narrator", "hi"}}, true);
  ASSERT_FALSE(unknown_role.ok());
  EXPECT_EQ(unknown_role.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(unknown_role.status().message(), HasSubstr("'narrator'"));
  EXPECT_FALSE(V2().ApplyChatTemplate({{"tool", "x"}}, true).ok());

  auto tok_json = ParseJsonFile(TokenizerDataDir() + "/v2/tokenizer.json");
  ASSERT_TRUE(tok_json.ok());
  auto config = ParseJson(R"({"bos_token": "<｜begin▁of▁sentence｜>",
      "chat_template": "{% for m in messages %}<|im_start|>{{ m.content }}{% endfor %}"})");
  auto tok = Tokenizer::FromJson(*tok_json, &*config);
  ASSERT_TRUE(tok.ok()) << tok.status();  // raw prompts still work
  EXPECT_TRUE((*tok)->Encode("raw prompt", true).ok());
  auto chat = (*tok)->ApplyChatTemplate({{"user", "hi"}}, true);
  ASSERT_FALSE(chat.ok());
  EXPECT_THAT(chat.status().message(), HasSubstr("DeepSeek-V2"));
  EXPECT_THAT(chat.status().message(), HasSubstr("DeepSeek-V3"));
  auto no_template = Tokenizer::FromJson(*tok_json, nullptr);
  EXPECT_FALSE((*no_template)->ApplyChatTemplate({{"user", "hi"}}, true).ok());
}

}  // namespace
}  // namespace dsv2
