#include "coordinator/serving/stop_matcher.h"

#include <random>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace dsv2 {
namespace {

using ::testing::HasSubstr;

bool IsCompleteUtf8(const std::string& s) {
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char b = s[i];
    const size_t len = b < 0x80 ? 1 : b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : b >= 0xc0 ? 2 : 0;
    if (len == 0 || i + len > s.size()) return false;
    for (size_t j = 1; j < len; ++j) {
      if ((static_cast<unsigned char>(s[i + j]) & 0xc0) != 0x80) return false;
    }
    i += len;
  }
  return true;
}

struct Streamed {
  std::string text;
  bool stopped = false;
};

// Pushes `text` in the given pieces, checking that every emitted piece is whole UTF-8.
Streamed Stream(const std::vector<std::string>& stops, const std::vector<std::string>& pieces) {
  StopMatcher m(stops);
  Streamed out;
  for (const std::string& p : pieces) {
    const std::string emitted = m.Push(p);
    EXPECT_TRUE(IsCompleteUtf8(emitted)) << "emitted a split character: " << emitted;
    out.text += emitted;
    if (m.stopped()) {
      EXPECT_EQ(m.Push("more"), "");
    }
  }
  out.stopped = m.stopped();
  out.text += m.Flush();
  return out;
}

std::vector<std::string> Bytes(const std::string& s) {
  std::vector<std::string> out;
  for (char c : s) out.push_back(std::string(1, c));
  return out;
}

// Oracle over the whole text: the first byte at which some stop string is complete; of those
// ending there, the longest. Emitted: everything before it.
Streamed Oracle(const std::vector<std::string>& stops, const std::string& text) {
  size_t best_end = std::string::npos;
  size_t best_len = 0;
  for (const std::string& s : stops) {
    if (s.empty()) continue;
    const size_t pos = text.find(s);
    if (pos == std::string::npos) continue;
    const size_t end = pos + s.size();
    if (end < best_end || (end == best_end && s.size() > best_len)) {
      best_end = end;
      best_len = s.size();
    }
  }
  if (best_end == std::string::npos) return {text, false};
  return {text.substr(0, best_end - best_len), true};
}

TEST(StopStringTest, NoStopStringsPassesTextThrough) {
  StopMatcher m({});
  EXPECT_EQ(m.Push("hello "), "hello ");
  EXPECT_EQ(m.Push("world"), "world");
  EXPECT_EQ(m.Flush(), "");
  EXPECT_FALSE(m.stopped());
}

TEST(StopStringTest, StopInOnePush) {
  StopMatcher m({"STOP"});
  EXPECT_EQ(m.Push("abc STOP def"), "abc ");
  EXPECT_TRUE(m.stopped());
  EXPECT_EQ(m.Push("xyz"), "");
  EXPECT_EQ(m.Flush(), "");
}

TEST(StopStringTest, HoldsBackAPossibleStartThenReleasesIt) {
  StopMatcher m({"abc", ""});
  EXPECT_EQ(m.Push("xxab"), "xx");
  EXPECT_EQ(m.Push("x"), "abx");
  EXPECT_EQ(m.Push("a"), "");
  EXPECT_EQ(m.Push("b"), "");
  EXPECT_EQ(m.Flush(), "ab");
  EXPECT_FALSE(m.stopped());
  EXPECT_EQ(m.Push("c"), "c");  // "ab" was flushed: no match across the Flush
  EXPECT_EQ(m.Push("abc"), "");
  EXPECT_TRUE(m.stopped());
}

TEST(StopStringTest, SplitAcrossManyPushes) {
  StopMatcher m({"<|end|>"});
  EXPECT_EQ(m.Push("Done<"), "Done");
  EXPECT_EQ(m.Push("|en"), "");
  EXPECT_EQ(m.Push("d|"), "");
  EXPECT_EQ(m.Push(">tail"), "");
  EXPECT_TRUE(m.stopped());
  const Streamed s = Stream({"<|end|>"}, Bytes("Done<|en<|end|>tail"));
  EXPECT_EQ(s.text, "Done<|en");
  EXPECT_TRUE(s.stopped);
}

TEST(StopStringTest, OverlappingPrefixes) {
  EXPECT_EQ(Stream({"abab"}, Bytes("abaabab")).text, "aba");
  EXPECT_EQ(Stream({"abab"}, {"abaabab"}).text, "aba");
  EXPECT_EQ(Stream({"aab"}, Bytes("aaaab")).text, "aa");
  EXPECT_EQ(Stream({"abcabd"}, Bytes("abcabcabd!")).text, "abc");
  const Streamed none = Stream({"abab"}, Bytes("abaaba"));
  EXPECT_EQ(none.text, "abaaba");
  EXPECT_FALSE(none.stopped);
}

TEST(StopStringTest, SeveralStopStringsEarliestWins) {
  EXPECT_EQ(Stream({"world", "lo"}, {"hello world"}).text, "hel");
  EXPECT_EQ(Stream({"lo", "world"}, Bytes("hello world")).text, "hel");
  // Completing at the same byte: the longer one is cut.
  EXPECT_EQ(Stream({"b", "ab"}, {"xxab"}).text, "xx");
  // A stop string inside a longer one completes first and wins, however the text is split.
  EXPECT_EQ(Stream({"abcd", "bc"}, {"xabcd"}).text, "xa");
  EXPECT_EQ(Stream({"abcd", "bc"}, Bytes("xabcd")).text, "xa");
}

TEST(StopStringTest, MultiByteUtf8) {
  const std::string stop = "\xe5\x81\x9c\xe6\xad\xa2";  // 停止
  const std::string text = "caf\xc3\xa9 \xe2\x82\xac" + stop + "\xf0\x9f\x98\x80";
  const Streamed s = Stream({stop}, Bytes(text));
  EXPECT_EQ(s.text, "caf\xc3\xa9 \xe2\x82\xac");
  EXPECT_TRUE(s.stopped);

  // A stop string sharing a lead byte with the text must not split the text's character.
  StopMatcher m({"\xe5\x81\x9c"});
  EXPECT_EQ(m.Push("a\xe5"), "a");
  EXPECT_EQ(m.Push("\x81"), "");
  EXPECT_EQ(m.Push("\x9d"), "\xe5\x81\x9d");
  // An incomplete character at the end is held even without stop strings.
  StopMatcher plain({});
  EXPECT_EQ(plain.Push("x\xf0\x9f"), "x");
  EXPECT_EQ(plain.Push("\x98"), "");
  EXPECT_EQ(plain.Push("\x80!"), "\xf0\x9f\x98\x80!");
}

TEST(StopStringTest, RandomTextsMatchTheOracle) {
  std::mt19937 gen(20240611);
  const std::vector<std::string> alphabet = {
      "a", "b", "c", "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80"};
  auto random_string = [&](int min_chars, int max_chars) {
    std::string s;
    const int n = std::uniform_int_distribution<int>(min_chars, max_chars)(gen);
    for (int i = 0; i < n; ++i) {
      s += alphabet[std::uniform_int_distribution<size_t>(0, alphabet.size() - 1)(gen)];
    }
    return s;
  };
  int stopped = 0;
  for (int iter = 0; iter < 3000; ++iter) {
    std::vector<std::string> stops;
    const int num_stops = std::uniform_int_distribution<int>(0, 3)(gen);
    for (int i = 0; i < num_stops; ++i) stops.push_back(random_string(1, 4));
    const std::string text = random_string(0, 40);
    const Streamed expected = Oracle(stops, text);
    stopped += expected.stopped;

    const Streamed by_byte = Stream(stops, Bytes(text));
    ASSERT_EQ(by_byte.text, expected.text) << "iteration " << iter << " text " << text;
    ASSERT_EQ(by_byte.stopped, expected.stopped) << "iteration " << iter;
    const Streamed whole = Stream(stops, {text});
    ASSERT_EQ(whole.text, expected.text) << "iteration " << iter;
    // Random chunks, cut at any byte.
    std::vector<std::string> pieces;
    for (size_t i = 0; i < text.size();) {
      const size_t len = std::uniform_int_distribution<size_t>(0, 6)(gen);
      pieces.push_back(text.substr(i, len));
      i += len;
    }
    const Streamed chunked = Stream(stops, pieces);
    ASSERT_EQ(chunked.text, expected.text) << "iteration " << iter;
    ASSERT_EQ(chunked.stopped, expected.stopped) << "iteration " << iter;

    // Where no stop string contains another, this is simply "the first occurrence".
    bool nested = false;
    for (const std::string& a : stops) {
      for (const std::string& b : stops) nested |= (&a != &b && b.find(a) != std::string::npos);
    }
    if (!nested) {
      size_t first = std::string::npos;
      for (const std::string& s : stops) first = std::min(first, text.find(s));
      ASSERT_EQ(by_byte.text, first == std::string::npos ? text : text.substr(0, first));
    }
  }
  EXPECT_GT(stopped, 500);  // the generator does exercise stops
}

TEST(StopStringTest, Validation) {
  EXPECT_TRUE(ValidateStopStrings({}).ok());
  EXPECT_TRUE(ValidateStopStrings({"", "\xe5\x81\x9c", std::string(256, 'x')}).ok());

  std::vector<std::string> many(17, "x");
  absl::Status s = ValidateStopStrings(many);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("stopping.stop has 17 strings, at most 16"));
  EXPECT_TRUE(ValidateStopStrings(std::vector<std::string>(16, "x")).ok());

  s = ValidateStopStrings({"a", std::string(257, 'y')});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("stopping.stop[1] is 257 bytes"));

  for (const std::string bad :
       {"\xff", "\xc3", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xe0\x80\x80", "a\x80"}) {
    s = ValidateStopStrings({"ok", "fine", bad});
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(std::string(s.message()), "stopping.stop[2] is not valid UTF-8");
  }
}

}  // namespace
}  // namespace dsv2
