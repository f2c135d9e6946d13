// The rule-based sentence splitter (core/include/megahost/core/preprocess/sentences.h).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "megahost/core/preprocess/sentences.h"

namespace prep = megahost::core::prep;

namespace {

std::vector<std::string> split(const std::string& text, bool keep_newlines = false) {
  std::vector<std::string_view> views;
  prep::split_sentences(text, keep_newlines, views);
  return {views.begin(), views.end()};
}

using S = std::vector<std::string>;

TEST(Sentences, SplitsAfterTerminatorWhitespaceAndCapital) {
  EXPECT_EQ(split("Hello there. How are you? Fine!"), (S{"Hello there.", "How are you?", "Fine!"}));
  EXPECT_EQ(split("Wait... What?! 3 cats came."), (S{"Wait...", "What?!", "3 cats came."}));
  EXPECT_EQ(split("He said \"Stop.\" Then he left."), (S{"He said \"Stop.\"", "Then he left."}));
  EXPECT_EQ(split("It ended. \"Why?\" she asked."), (S{"It ended.", "\"Why?\" she asked."}));
}

TEST(Sentences, DoesNotSplitWithoutTheRules) {
  EXPECT_EQ(split("the end. then more"), (S{"the end. then more"}));  // lower case follows
  EXPECT_EQ(split("Version 3.5 is out."), (S{"Version 3.5 is out."}));  // no whitespace after '.'
  EXPECT_EQ(split("Mr. Smith met Dr. Jones in the U.S. Army."), (S{"Mr. Smith met Dr. Jones in the U.S. Army."}));
  EXPECT_EQ(split("Fruit, e.g. Apples, etc. Are fine."), (S{"Fruit, e.g. Apples, etc. Are fine."}));
  EXPECT_EQ(split("J. R. R. Tolkien wrote it. It sold."), (S{"J. R. R. Tolkien wrote it.", "It sold."}));
}

TEST(Sentences, WhitespaceAsPunkt) {
  // Leading whitespace stays in the first sentence, the last loses its trailing whitespace,
  // whitespace between sentences is dropped, or kept at the end of a sentence with keep_newlines.
  EXPECT_EQ(split("  One.\n\nTwo.  \n"), (S{"  One.", "Two."}));
  EXPECT_EQ(split("  One.\n\nTwo.  \n", true), (S{"  One.\n\n", "Two."}));
  EXPECT_EQ(split("Line one\nline two. Next"), (S{"Line one\nline two.", "Next"}));
  EXPECT_EQ(split(""), S{});
  EXPECT_EQ(split("   "), (S{""}));
}

TEST(Sentences, UnicodeQuotes) {
  EXPECT_EQ(split("Er sagte \xE2\x80\x9CNein.\xE2\x80\x9D \xE2\x80\x9C" "Doch!\xE2\x80\x9D"),
            (S{"Er sagte \xE2\x80\x9CNein.\xE2\x80\x9D", "\xE2\x80\x9C" "Doch!\xE2\x80\x9D"}));
}

TEST(Sentences, CutsEveryMillionCodePointsAsMegatron) {
  // The first piece ends right after "b." (1,000,000 code points): the space before "Cd"
  // starts the second piece, so it stays (the first sentence of a piece keeps its leading
  // whitespace); without the cut the result would be "...b." and "Cd".
  std::string text(999998, 'a');
  text += "b. Cd";
  const S s = split(text);
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s[0].size(), 1000000u);
  EXPECT_EQ(s[1], " Cd");
  // Multi-byte code points count once: 999,998 "é" (2 bytes each) + "x." is exactly one piece.
  std::string wide;
  for (int i = 0; i < 999998; ++i) wide += "\xC3\xA9";
  wide += "x. Yz";
  const S w = split(wide);
  ASSERT_EQ(w.size(), 2u);
  EXPECT_EQ(w[1], " Yz");
}

}  // namespace
