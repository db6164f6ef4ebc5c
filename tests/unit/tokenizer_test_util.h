// Shared helpers of the tokenizer tests: fixture paths and JSONL reading.
#pragma once

#include <fstream>
#include <string>
#include <vector>

#include "common/json.h"
#include "gtest/gtest.h"

namespace dsv2::testing {

inline std::string TokenizerDataDir() { return std::string(DSV2_TEST_DATA_DIR) + "/tokenizer"; }

// One parsed JSON value per non-empty line; fails the test on a parse error.
inline std::vector<JsonValue> ReadJsonLines(const std::string& path) {
  std::vector<JsonValue> rows;
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << "cannot open " << path;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    absl::StatusOr<JsonValue> v = ParseJson(line);
    EXPECT_TRUE(v.ok()) << path << ": " << v.status();
    if (v.ok()) rows.push_back(*std::move(v));
  }
  return rows;
}

inline std::vector<int32_t> IdsOf(const JsonValue& array) {
  std::vector<int32_t> ids;
  for (const JsonValue& v : array.as_array()) ids.push_back(static_cast<int32_t>(v.as_int()));
  return ids;
}

}  // namespace dsv2::testing
