// xgrammar's C++ core, built by our CMake from its PyPI source distribution: a JSON grammar over
// a small vocabulary allows exactly the tokens that keep the output valid JSON, advances with
// them, and ends with the stop token. The first step of structured outputs (issue 33).
#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "xgrammar/xgrammar.h"

namespace dsv2 {
namespace {

// Token ids of the test vocabulary.
enum : int32_t { kOpen, kClose, kQuote, kColon, kA, kB, kComma, kSpace, kOne, kWord, kEos };

class XgrammarCoreTest : public ::testing::Test {
 protected:
  XgrammarCoreTest()
      : info_({"{", "}", "\"", ":", "a", "b", ",", " ", "1", "hello", "</s>"},
              xgrammar::VocabType::RAW, std::nullopt, std::vector<int32_t>{kEos}),
        compiler_(info_, /*max_threads=*/1) {}

  // The tokens the matcher allows next.
  std::vector<int32_t> Allowed(xgrammar::GrammarMatcher& m) {
    std::vector<int32_t> mask(xgrammar::GetBitmaskSize(info_.GetVocabSize()));
    int64_t shape[1] = {static_cast<int64_t>(mask.size())};
    DLTensor t{};
    t.data = mask.data();
    t.device = DLDevice{kDLCPU, 0};
    t.ndim = 1;
    t.dtype = xgrammar::GetBitmaskDLType();
    t.shape = shape;
    m.FillNextTokenBitmask(&t);
    std::vector<int32_t> allowed;
    for (int32_t id = 0; id < info_.GetVocabSize(); ++id) {
      if ((mask[id / 32] >> (id % 32)) & 1) allowed.push_back(id);
    }
    return allowed;
  }

  xgrammar::TokenizerInfo info_;
  xgrammar::GrammarCompiler compiler_;
};

bool Has(const std::vector<int32_t>& v, int32_t id) {
  return std::find(v.begin(), v.end(), id) != v.end();
}

TEST_F(XgrammarCoreTest, JsonSchemaAllowsOnlyValidContinuations) {
  const xgrammar::CompiledGrammar grammar = compiler_.CompileJSONSchema(
      R"({"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"],
          "additionalProperties": false})",
      /*any_whitespace=*/false, /*indent=*/std::nullopt,
      std::make_pair(std::string(","), std::string(":")));
  xgrammar::GrammarMatcher m(grammar);
  std::vector<int32_t> allowed = Allowed(m);
  EXPECT_TRUE(Has(allowed, kOpen));
  EXPECT_FALSE(Has(allowed, kA));
  EXPECT_FALSE(Has(allowed, kEos));
  // {"a":1}
  for (const int32_t t : {kOpen, kQuote, kA, kQuote, kColon}) ASSERT_TRUE(m.AcceptToken(t)) << t;
  allowed = Allowed(m);
  EXPECT_TRUE(Has(allowed, kOne));
  EXPECT_FALSE(Has(allowed, kWord));  // a string where the schema wants an integer
  EXPECT_FALSE(m.AcceptToken(kB));
  ASSERT_TRUE(m.AcceptToken(kOne));
  ASSERT_TRUE(m.AcceptToken(kClose));
  EXPECT_EQ(Allowed(m), std::vector<int32_t>{kEos});  // the object is complete
  ASSERT_TRUE(m.AcceptToken(kEos));
  EXPECT_TRUE(m.IsTerminated());
}

TEST_F(XgrammarCoreTest, AnyJsonAndABadSchema) {
  xgrammar::GrammarMatcher m(compiler_.CompileBuiltinJSONGrammar());
  for (const int32_t t : {kOpen, kClose}) ASSERT_TRUE(m.AcceptToken(t));
  ASSERT_TRUE(m.AcceptToken(kEos));
  EXPECT_TRUE(m.IsTerminated());
  EXPECT_ANY_THROW(compiler_.CompileJSONSchema("{\"type\": 7}"));
}

}  // namespace
}  // namespace dsv2
