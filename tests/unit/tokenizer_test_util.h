// Shared helpers of the tokenizer tests: fixture paths and JSONL reading.
#pragma once

#include <fstream>
#include <string>
#include <vector>

#include "common/json_document.h"
#include "gtest/gtest.h"

namespace dsv2::testing {

inline std::string TokenizerDataDir() { return std::string(DSV2_TEST_DATA_DIR) + "/tokenizer"; }

// One parsed JSON value per non-empty line; fails the test on a parse error.
inline std::vector<Json> ReadJsonLines(const std::string& path) {
  std::vector<Json> rows;
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << "cannot open " << path;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    absl::StatusOr<Json> v = ParseJson(line);
    EXPECT_TRUE(v.ok()) << path << ": " << v.status();
    if (v.ok()) rows.push_back(*std::move(v));
  }
  return rows;
}

inline std::vector<int32_t> IdsOf(const Json& array) {
  std::vector<int32_t> ids;
  for (const Json& v : array) ids.push_back(static_cast<int32_t>(JsonInt(v)));
  return ids;
}

}  // namespace dsv2::testing
