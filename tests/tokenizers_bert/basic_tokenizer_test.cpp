// BasicTokenizer (the static library) against Python: data/basic_words.jsonl holds the words
// Python's unicodedata and str.lower() give for tricky strings (final sigma, U+0130, combining
// mark reordering, Hangul, CJK compatibility ideographs, Zs/Zl/Cf/Cc, astral characters). The
// golden id files cannot check these: their vocabularies are ASCII-only.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <fstream>
#include <string>
#include <vector>

#include "basic_tokenizer.h"
#include "megahost/sdk/error.h"
#include "unicode_tables.h"

using megahost::tokenizers::bert::BasicTokenizer;
using megahost::tokenizers::bert::Words;

namespace {

std::vector<std::string> words_of(const BasicTokenizer& basic, const std::string& text) {
  Words w;
  basic.split(text, w);
  std::vector<std::string> out;
  for (size_t i = 0; i < w.size(); ++i) {
    std::string s;
    for (size_t k = w.begin_of(i); k < w.ends[i]; ++k) megahost::tokenizers::bert::append_utf8(w.cps[k], s);
    out.push_back(s);
  }
  return out;
}

}  // namespace

TEST(BertBasicTokenizer, WordsEqualPythonsOnTrickyUnicode) {
  std::ifstream in(BERT_TEST_DATA_DIR "/basic_words.jsonl");
  ASSERT_TRUE(in.good());
  const BasicTokenizer lower(true), cased(false);
  size_t n = 0;
  for (std::string line; std::getline(in, line); ++n) {
    const auto j = nlohmann::json::parse(line);
    const auto text = j.at("text").get<std::string>();
    EXPECT_EQ(words_of(lower, text), j.at("lower").get<std::vector<std::string>>()) << "lower: " << j.at("text");
    EXPECT_EQ(words_of(cased, text), j.at("cased").get<std::vector<std::string>>()) << "cased: " << j.at("text");
  }
  EXPECT_EQ(n, 424u);
}

TEST(BertBasicTokenizer, SplitsAsMegatronOnPlainCases) {
  const BasicTokenizer lower(true), cased(false);
  EXPECT_EQ(words_of(lower, "  Hello,\tWORLD!!  "), (std::vector<std::string>{"hello", ",", "world", "!", "!"}));
  EXPECT_EQ(words_of(cased, "don't"), (std::vector<std::string>{"don", "'", "t"}));
  EXPECT_EQ(words_of(cased, "a\xE4\xB8\xAD" "b"), (std::vector<std::string>{"a", "\xE4\xB8\xAD", "b"}));  // a中b
  EXPECT_EQ(words_of(cased, "x\x01y"), (std::vector<std::string>{"xy"}));  // control characters vanish
  EXPECT_EQ(words_of(cased, "$5^`~"), (std::vector<std::string>{"$", "5", "^", "`", "~"}));  // ASCII symbols split
  EXPECT_TRUE(words_of(lower, "").empty());
  EXPECT_TRUE(words_of(lower, "\xCC\x81").empty());  // a lone accent strips to nothing
  Words w;
  EXPECT_THROW(lower.split("\xF8\x88\x80\x80\x80", w), megahost::sdk::Error);  // 5-byte form
  EXPECT_THROW(lower.split("\xC0\xAF", w), megahost::sdk::Error);              // overlong "/"
}
