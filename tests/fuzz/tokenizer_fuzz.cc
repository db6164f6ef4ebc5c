// libFuzzer target for the tokenizer (built and run by scripts/fuzz-tokenizer.sh).
// The first input byte picks what the rest is used as:
//   0: text for Encode on the real DeepSeek-V3 tokenizer; valid UTF-8 must round-trip exactly
//      (Decode(Encode(s)) == s), invalid UTF-8 must be INVALID_ARGUMENT;
//   1: text for the V2-style tokenizer (added tokens with lstrip/rstrip/single_word);
//   2: little-endian 16-bit ids for Decode and the incremental detokenizer, which must agree;
//   3: a regex pattern for the Oniguruma -> PCRE2 translation, then matched against itself.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "common/utf8.h"
#include "coordinator/tokenizer/regex.h"
#include "coordinator/tokenizer/tokenizer.h"

namespace {

const dsv2::Tokenizer& Load(const char* name) {
  const char* env = std::getenv("DSV2_TOKENIZER_DATA");
  const std::string dir = std::string(env ? env : DSV2_TOKENIZER_DATA) + "/" + name;
  auto tok = dsv2::Tokenizer::Load(dir);
  if (!tok.ok()) {
    std::fprintf(stderr, "fuzz: %s\n", std::string(tok.status().message()).c_str());
    std::abort();
  }
  return *tok->release();
}

void Check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz: check failed: %s\n", what);
    std::abort();
  }
}

void FuzzEncode(const dsv2::Tokenizer& tok, std::string_view text, bool exact_round_trip) {
  const bool valid = dsv2::ValidateUtf8(text).ok();
  absl::StatusOr<std::vector<int32_t>> ids = tok.Encode(text, /*add_special=*/false);
  if (!valid) {
    Check(!ids.ok() && ids.status().code() == absl::StatusCode::kInvalidArgument,
          "invalid UTF-8 is INVALID_ARGUMENT");
    return;
  }
  if (!ids.ok()) {
    // Only a regex resource limit may refuse valid text.
    Check(ids.status().code() == absl::StatusCode::kResourceExhausted, "valid text encodes");
    return;
  }
  absl::StatusOr<std::string> back = tok.Decode(*ids, /*skip_special=*/false);
  Check(back.ok(), "decode of encode succeeds");
  if (exact_round_trip) Check(*back == text, "Decode(Encode(s)) == s");
}

void FuzzDecode(const dsv2::Tokenizer& tok, std::string_view data) {
  std::vector<int32_t> ids;
  for (size_t i = 0; i + 1 < data.size(); i += 2) {
    const int32_t id = static_cast<uint8_t>(data[i]) | (static_cast<uint8_t>(data[i + 1]) << 8);
    if (tok.TokenBytes(id) != nullptr) ids.push_back(id);
  }
  for (bool skip : {false, true}) {
    absl::StatusOr<std::string> all = tok.Decode(ids, skip);
    Check(all.ok(), "decode of known ids succeeds");
    Check(dsv2::ValidateUtf8(*all).ok(), "decode gives valid UTF-8");
    dsv2::IncrementalDetokenizer detok(tok, skip);
    std::string streamed;
    for (int32_t id : ids) streamed += *detok.Add(id);
    streamed += detok.Flush();
    Check(streamed == *all, "streamed text equals Decode");
  }
}

void FuzzRegex(std::string_view pattern) {
  if (!dsv2::ValidateUtf8(pattern).ok()) return;
  auto re = dsv2::tokenizer::Regex::Compile(pattern);
  if (!re.ok()) return;
  size_t pos = 0, b, e;
  while (pos <= pattern.size() && (*re)->Find(pattern, pos, &b, &e) == 1) {
    Check(b <= e && e <= pattern.size() && b >= pos, "match inside the subject");
    pos = e > pos ? e : pos + std::max<size_t>(1, dsv2::ValidSequenceLength(pattern, pos));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const dsv2::Tokenizer& v3 = Load("v3");
  static const dsv2::Tokenizer& v2 = Load("v2");
  if (size == 0) return 0;
  const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 4) {
    case 0:
      FuzzEncode(v3, rest, /*exact_round_trip=*/true);
      break;
    case 1:
      FuzzEncode(v2, rest, /*exact_round_trip=*/false);
      break;
    case 2:
      FuzzDecode(data[0] & 4 ? v2 : v3, rest);
      break;
    case 3:
      FuzzRegex(rest);
      break;
  }
  return 0;
}
