// The JSON fast path of preprocessing gives exactly what nlohmann (and json.loads) give.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "megahost/core/preprocess/json_fields.h"

namespace prep = megahost::core::prep;

namespace {

std::vector<std::string> expected(const std::string& line, const std::string& key = "text") {
  const auto j = nlohmann::json::parse(line);
  const auto& v = j.at(key);
  if (v.is_string()) return {v.get<std::string>()};
  return v.get<std::vector<std::string>>();
}

std::vector<std::string> got(prep::JsonFields& f, size_t k = 0) {
  return {f.values(k).begin(), f.values(k).end()};
}

TEST(JsonFields, FastPathEqualsNlohmannOnTrickyLines) {
  const std::vector<std::string> lines = {
      R"({"text": "plain"})",
      R"({"text":"esc \" \\ \/ \b \f \n \r \t end"})",
      R"({"text": "\u0041\u00e9\u4e2d\uD83D\uDE00 \ud834\udd1e"})",  // BMP, CJK, surrogate pairs (both cases)
      R"({"text": "\u0000 nul"})",
      "{\"text\": \"raw utf-8: \xC3\xA9 \xE4\xB8\xAD \xF0\x9F\x98\x80\"}",
      R"(  {"id": 7, "meta": {"a": [1, -2.5e+3, true, false, null, {"b": "\"x\""}]}, "text": "after nested"}  )",
      R"({"text": "first", "text": "second wins"})",
      R"({"text": ["sentence one.", "two \u00e9", ""]})",
      R"({"text": []})",
      R"({"text": ""})",
      R"({"other": "x\ty", "text": "t"})",
      "{\"text\": \"del \x7f ok\"}",
  };
  prep::JsonFields f({"text"});
  for (const auto& line : lines) {
    SCOPED_TRACE(line);
    ASSERT_NO_THROW(f.parse(line));
    EXPECT_TRUE(f.fast_path());
    EXPECT_EQ(got(f), expected(line));
    EXPECT_EQ(f.is_array(0), nlohmann::json::parse(line)["text"].is_array());
  }
}

TEST(JsonFields, FallbackGivesTheSameValues) {
  // Escaped keys and wanted fields of another type go to nlohmann.
  prep::JsonFields f({"text"});
  f.parse(R"({"te\u0078t": "escaped key"})");
  EXPECT_FALSE(f.fast_path());
  EXPECT_EQ(got(f), std::vector<std::string>{"escaped key"});
}

TEST(JsonFields, SeveralKeys) {
  prep::JsonFields f({"title", "text"});
  f.parse(R"({"text": "body", "title": "head\n"})");
  EXPECT_TRUE(f.fast_path());
  EXPECT_EQ(got(f, 0), std::vector<std::string>{"head\n"});
  EXPECT_EQ(got(f, 1), std::vector<std::string>{"body"});
}

TEST(JsonFields, RandomStringsRoundTrip) {
  // Random code points (all planes, controls, quotes, backslashes) dumped by nlohmann with and
  // without \u escapes must come back byte for byte.
  std::mt19937 rng(1234);
  std::uniform_int_distribution<int> len(0, 40), kind(0, 5);
  prep::JsonFields f({"text"});
  for (int round = 0; round < 2000; ++round) {
    std::u32string cps;
    for (int n = len(rng); n > 0; --n) {
      uint32_t cp = 0;
      switch (kind(rng)) {
        case 0: cp = std::uniform_int_distribution<uint32_t>(0, 0x1F)(rng); break;
        case 1: cp = "\"\\/ab"[std::uniform_int_distribution<int>(0, 4)(rng)]; break;
        case 2: cp = std::uniform_int_distribution<uint32_t>(0x20, 0x7F)(rng); break;
        case 3: cp = std::uniform_int_distribution<uint32_t>(0x80, 0xD7FF)(rng); break;
        case 4: cp = std::uniform_int_distribution<uint32_t>(0xE000, 0xFFFF)(rng); break;
        default: cp = std::uniform_int_distribution<uint32_t>(0x10000, 0x10FFFF)(rng); break;
      }
      cps.push_back(cp);
    }
    std::string utf8;
    for (char32_t cp : cps) {
      if (cp < 0x80) {
        utf8 += static_cast<char>(cp);
      } else if (cp < 0x800) {
        utf8 += static_cast<char>(0xC0 | (cp >> 6));
        utf8 += static_cast<char>(0x80 | (cp & 0x3F));
      } else if (cp < 0x10000) {
        utf8 += static_cast<char>(0xE0 | (cp >> 12));
        utf8 += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        utf8 += static_cast<char>(0x80 | (cp & 0x3F));
      } else {
        utf8 += static_cast<char>(0xF0 | (cp >> 18));
        utf8 += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
        utf8 += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        utf8 += static_cast<char>(0x80 | (cp & 0x3F));
      }
    }
    const nlohmann::json j = {{"id", round}, {"text", utf8}};
    for (bool ascii : {false, true}) {
      const std::string line = j.dump(-1, ' ', ascii);
      f.parse(line);
      ASSERT_TRUE(f.fast_path()) << line;
      ASSERT_EQ(got(f), std::vector<std::string>{utf8}) << line;
    }
  }
}

TEST(JsonFields, InvalidInputThrowsAsNlohmann) {
  const std::vector<std::string> bad = {
      R"({"text": "bad escape \x"})",
      R"({"text": "lone high \ud800"})",
      R"({"text": "lone low \udc00 x"})",
      "{\"text\": \"raw control \x01\"}",
      "{\"text\": \"bad utf-8 \xC3\x28\"}",
      "{\"text\": \"overlong \xC0\xAF\"}",
      "{\"text\": \"surrogate as utf-8 \xED\xA0\x80\"}",
      R"({"text": "unterminated)",
      R"({"text": "x",})",
      R"({"text": 01})",
      R"({"text": "x"} trailing)",
      R"({"text": NaN})",
  };
  prep::JsonFields f({"text"});
  for (const auto& line : bad) {
    SCOPED_TRACE(line);
    EXPECT_THROW(nlohmann::json::parse(line), nlohmann::json::exception);
    EXPECT_THROW(f.parse(line), std::exception);
  }
  // Valid JSON without a usable field: core::Error naming the key.
  for (const std::string line : {R"({"body": "x"})", R"({"text": 5})", R"({"text": ["a", 1]})", R"(["text"])"}) {
    SCOPED_TRACE(line);
    try {
      f.parse(line);
      ADD_FAILURE() << "no error";
    } catch (const std::exception& e) {
      EXPECT_NE(std::string(e.what()).find("'text'"), std::string::npos) << e.what();
    }
  }
}

}  // namespace
