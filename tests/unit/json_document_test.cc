// ParseJson (common/json_document.h): nlohmann::json without exceptions, errors that say where.
#include "common/json_document.h"

#include <cstdint>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace dsv2 {
namespace {

using ::testing::HasSubstr;

TEST(JsonDocumentTest, ErrorsCarryLineColumnAndByte) {
  absl::StatusOr<Json> j = ParseJson("{\n  \"a\": [1, 2,, 3]\n}");
  ASSERT_FALSE(j.ok());
  EXPECT_EQ(j.status().code(), absl::StatusCode::kInvalidArgument);
  // The second ',' of "2,," is byte 15: line 2, column 14.
  EXPECT_THAT(j.status().message(), HasSubstr("at line 2, column 14 (byte 15)"));
  EXPECT_THAT(j.status().message(), HasSubstr("unexpected ','"));
}

TEST(JsonDocumentTest, RefusesWhatIsNotOneDocument) {
  EXPECT_FALSE(ParseJson("{\"a\": 1} trailing").ok());
  EXPECT_FALSE(ParseJson("\"unterminated").ok());
  EXPECT_FALSE(ParseJson("").ok());
  EXPECT_FALSE(ParseJson("{\"a\": \"\xff\"}").ok());  // not UTF-8
  EXPECT_FALSE(ParseJson("{\"a\": 01}").ok());
  EXPECT_TRUE(ParseJson(" \n{\"a\": [true, false, null]}\n ").ok());
}

TEST(JsonDocumentTest, NestingLimitNamesWhere) {
  const std::string deep(kMaxJsonDepth + 1, '[');
  absl::StatusOr<Json> j = ParseJson(deep + std::string(kMaxJsonDepth + 1, ']'));
  ASSERT_FALSE(j.ok());
  EXPECT_THAT(j.status().message(), HasSubstr("nesting deeper than 256"));
  EXPECT_THAT(j.status().message(), HasSubstr("(byte 256)"));
  // Brackets inside strings (escaped quotes too) do not count.
  const std::string in_string = "[\"" + std::string(1000, '[') + "\\\"[[\"]";
  EXPECT_TRUE(ParseJson(in_string).ok()) << ParseJson(in_string).status();
  EXPECT_TRUE(ParseJson(std::string(kMaxJsonDepth, '[') + std::string(kMaxJsonDepth, ']')).ok());
}

TEST(JsonDocumentTest, StringsAndNumbers) {
  absl::StatusOr<Json> j =
      ParseJson(R"({"s": "a\u00e9\ud83d\ude00\n", "i": -12, "f": 1.5e3, "b": true, "w": 2.0})");
  ASSERT_TRUE(j.ok()) << j.status();
  EXPECT_EQ(JsonMember(*j, "s")->get<std::string>(), "a\xc3\xa9\xf0\x9f\x98\x80\n");
  EXPECT_TRUE(IsJsonInteger(*JsonMember(*j, "i")));
  EXPECT_EQ(JsonInt(*JsonMember(*j, "i")), -12);
  EXPECT_FALSE(IsJsonInteger(*JsonMember(*j, "f")));
  EXPECT_FALSE(IsJsonInteger(*JsonMember(*j, "w")));  // written as a fraction
  EXPECT_EQ(JsonMember(*j, "f")->get<double>(), 1500.0);
  EXPECT_TRUE(JsonMember(*j, "b")->get<bool>());
  EXPECT_EQ(JsonMember(*j, "absent"), nullptr);
  EXPECT_EQ(JsonMember(*JsonMember(*j, "i"), "x"), nullptr);  // not an object
}

// Found by scripts/fuzz.sh: an integer literal beyond int64 is not an integer, and its value is
// clamped, never undefined.
TEST(JsonDocumentTest, IntegerLiteralBeyondInt64IsNotAnInteger) {
  absl::StatusOr<Json> j = ParseJson(
      R"({"big": 100000000000000000000000000000, "max": 9223372036854775807,
          "over": 9223372036854775808, "min": -9223372036854775808, "s": "7"})");
  ASSERT_TRUE(j.ok()) << j.status();
  EXPECT_FALSE(IsJsonInteger(*JsonMember(*j, "big")));
  EXPECT_EQ(JsonInt(*JsonMember(*j, "big")), INT64_MAX);
  EXPECT_TRUE(IsJsonInteger(*JsonMember(*j, "max")));
  EXPECT_EQ(JsonInt(*JsonMember(*j, "max")), INT64_MAX);
  EXPECT_FALSE(IsJsonInteger(*JsonMember(*j, "over")));
  EXPECT_EQ(JsonInt(*JsonMember(*j, "over")), INT64_MAX);
  EXPECT_TRUE(IsJsonInteger(*JsonMember(*j, "min")));
  EXPECT_EQ(JsonInt(*JsonMember(*j, "min")), INT64_MIN);
  EXPECT_EQ(JsonInt(*JsonMember(*j, "s")), 0);
}

TEST(JsonDocumentTest, FileErrorsNameTheFile) {
  absl::StatusOr<Json> j = ParseJsonFile("/does/not/exist.json");
  ASSERT_FALSE(j.ok());
  EXPECT_EQ(j.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(j.status().message(), HasSubstr("/does/not/exist.json"));
}

}  // namespace
}  // namespace dsv2
