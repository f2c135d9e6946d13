// The bert-wordpiece plugins through core's PluginRegistry, the way the host loads them: ids of
// every golden line equal Megatron's BertWordPieceLowerCase / BertWordPieceCase, special tokens
// as Megatron's _BertWordPieceTokenizer, decode as its convert_tokens_to_string, clean errors.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <string>
#include <thread>
#include <vector>

#include "megahost/core/error.h"
#include "test_util.h"

using namespace bert_test;
using megahost::core::PluginKind;

namespace {

// Encodes every golden line; reports each line that differs.
void expect_golden(const std::string& tokenizer_type, const fs::path& vocab, const fs::path& golden) {
  auto tok = registry().create_tokenizer(tokenizer_type, vocab_section(vocab));
  const auto lines = read_golden(golden);
  ASSERT_EQ(lines.size(), 205u);
  size_t mismatches = 0;
  for (size_t i = 0; i < lines.size(); ++i) {
    const auto ids = tok->encode(lines[i].text);
    if (ids != lines[i].ids) {
      ++mismatches;
      ADD_FAILURE() << golden.filename() << " line " << i + 1 << ": " << nlohmann::json(lines[i].text).dump()
                    << "\n  expected " << nlohmann::json(lines[i].ids).dump() << "\n  got      "
                    << nlohmann::json(ids).dump();
    }
  }
  EXPECT_EQ(mismatches, 0u);
}

// A tiny vocabulary to check WordPiece itself (file lines are ids 0..).
const char kTinyVocab[] =
    "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nun\n##aff\n##able\na\n##a\nthe\n##s\n,\n.\n'\nit\nhello\n";

}  // namespace

TEST(BertWordPiece, BothVariantsAreFoundWithAliases) {
  for (const auto& r : registry().refused())
    EXPECT_EQ(r.path.filename().string().find("bert_wordpiece"), std::string::npos) << r.reason;
  const auto& lower = registry().find(PluginKind::Tokenizer, "bert-wordpiece-lower");
  const auto& cased = registry().find(PluginKind::Tokenizer, "bert-wordpiece-cased");
  EXPECT_EQ(&registry().find(PluginKind::Tokenizer, "BertWordPieceLowerCase"), &lower);
  EXPECT_EQ(&registry().find(PluginKind::Tokenizer, "BertWordPieceCase"), &cased);
  EXPECT_EQ(lower.path, cased.path);  // one library, two ids
  const auto schema = nlohmann::json::parse(lower.config_schema);
  EXPECT_TRUE(schema.at("vocab_file").at("required").get<bool>());
  EXPECT_EQ(schema.at("vocab_file").at("type"), "path");
  EXPECT_EQ(schema.at("vocab_extra_ids").at("default"), 0);
}

TEST(BertWordPiece, LowerCaseEqualsMegatronOnEveryGoldenLine) {
  expect_golden("BertWordPieceLowerCase", kUncasedVocab, kGoldenDir / "bert_wordpiece_lower_ids.jsonl");
}

TEST(BertWordPiece, CasedEqualsMegatronOnEveryGoldenLine) {
  expect_golden("BertWordPieceCase", kCasedVocab, kGoldenDir / "bert_wordpiece_cased_ids.jsonl");
}

TEST(BertWordPiece, SpecialTokensAsMegatron) {
  // Vocab lines: [PAD]=0, [unused0-9], [UNK]=11, [CLS]=12, [SEP]=13, [MASK]=14; Megatron then
  // appends [BOS] and [EOS] (absent from the file), and eod is eos.
  auto lower = registry().create_tokenizer("bert-wordpiece-lower", vocab_section(kUncasedVocab));
  EXPECT_EQ(lower->vocab_size(), 12129 + 2);
  EXPECT_EQ(lower->special_token("pad"), 0);
  EXPECT_EQ(lower->special_token("unk"), 11);
  EXPECT_EQ(lower->special_token("cls"), 12);
  EXPECT_EQ(lower->special_token("sep"), 13);
  EXPECT_EQ(lower->special_token("mask"), 14);
  EXPECT_EQ(lower->special_token("bos"), 12129);
  EXPECT_EQ(lower->special_token("eos"), 12130);
  EXPECT_EQ(lower->special_token("eod"), 12130);
  EXPECT_EQ(lower->special_token("no-such-token"), std::nullopt);
  EXPECT_EQ(lower->decode({12, 12129, 12130, 13}), "[CLS] [BOS] [EOS] [SEP]");

  auto cased = registry().create_tokenizer("bert-wordpiece-cased", vocab_section(kCasedVocab));
  EXPECT_EQ(cased->vocab_size(), 12181 + 2);
  EXPECT_EQ(cased->special_token("eod"), 12182);

  // --vocab-extra-ids: <extra_id_0>.. after [BOS] and [EOS].
  auto extra = registry().create_tokenizer(
      "bert-wordpiece-lower", section("vocab_file = '" + kUncasedVocab.string() + "'\nvocab_extra_ids = 3\n"));
  EXPECT_EQ(extra->vocab_size(), 12129 + 2 + 3);
  EXPECT_EQ(extra->decode({12131, 12133}), "<extra_id_0> <extra_id_2>");
}

TEST(BertWordPiece, DecodeIsMegatronsConvertTokensToString) {
  auto tok = registry().create_tokenizer("bert-wordpiece-lower", vocab_section(kUncasedVocab));
  // Pieces merge, spaces before punctuation and inside contractions go.
  EXPECT_EQ(tok->decode(tok->encode("Hello, World! It's antidisestablishmentarianism.")),
            "hello, world! it's antidisestablishmentarianism.");
  EXPECT_EQ(tok->decode({}), "");
  auto cased = registry().create_tokenizer("bert-wordpiece-cased", vocab_section(kCasedVocab));
  EXPECT_EQ(cased->decode(cased->encode("The jury  said ,\tthey won't.")), "The jury said, they won't.");
}

TEST(BertWordPiece, GreedyLongestMatchOnATinyVocab) {
  TempDir dir;
  const auto vocab = write_file(dir / "vocab.txt", kTinyVocab);
  auto tok = registry().create_tokenizer("bert-wordpiece-lower", vocab_section(vocab));
  EXPECT_EQ(tok->vocab_size(), 17 + 2);
  EXPECT_EQ(tok->encode("unaffable"), (std::vector<int32_t>{5, 6, 7}));      // un ##aff ##able
  EXPECT_EQ(tok->encode("UnAffable the"), (std::vector<int32_t>{5, 6, 7, 10}));
  EXPECT_EQ(tok->encode("unaffablex the"), (std::vector<int32_t>{1, 10}));  // unmatched rest: whole word [UNK]
  EXPECT_EQ(tok->encode("thes"), (std::vector<int32_t>{10, 11}));
  EXPECT_EQ(tok->encode("it's,"), (std::vector<int32_t>{15, 14, 1, 12}));  // "s" alone is not a word start
  // Up to 200 code points a word is matched; longer is one [UNK].
  const auto a200 = tok->encode(std::string(200, 'a'));
  ASSERT_EQ(a200.size(), 200u);
  EXPECT_EQ(a200[0], 8);
  EXPECT_EQ(a200[199], 9);
  EXPECT_EQ(tok->encode(std::string(201, 'a')), (std::vector<int32_t>{1}));
  // Code points, not bytes: 200 x "a" + accent is 200 after stripping the accent (lower-case).
  std::string accented(199, 'a');
  accented += "\xC3\xA1";  // U+00E1
  EXPECT_EQ(tok->encode(accented).size(), 200u);
}

TEST(BertWordPiece, VocabFileErrorsNameTheFileAndLine) {
  TempDir dir;
  auto message_of = [&](const std::string& vocab_text) {
    const auto vocab = write_file(dir / "v.txt", vocab_text);
    try {
      registry().create_tokenizer("bert-wordpiece-cased", vocab_section(vocab));
    } catch (const megahost::core::Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  std::string m = message_of("[PAD]\n[UNK]\n[CLS]\n[SEP]\nthe\n");
  EXPECT_NE(m.find("no line '[MASK]'"), std::string::npos) << m;
  EXPECT_NE(m.find("HINT"), std::string::npos) << m;
  EXPECT_NE(m.find("test-recipe.toml"), std::string::npos) << m;  // points at the recipe key too
  m = message_of(std::string(kTinyVocab) + "the\n");
  EXPECT_NE(m.find("v.txt:18: token 'the' repeats line 11"), std::string::npos) << m;
  m = message_of("");
  EXPECT_NE(m.find("empty"), std::string::npos) << m;
  m = message_of("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n\xFF\xFE\n");
  EXPECT_NE(m.find("v.txt:6: not valid UTF-8"), std::string::npos) << m;
  try {
    registry().create_tokenizer("bert-wordpiece-lower", vocab_section(dir / "missing.txt"));
    FAIL() << "loaded a missing vocab";
  } catch (const megahost::core::Error& e) {
    EXPECT_NE(std::string(e.what()).find("missing.txt: cannot open"), std::string::npos) << e.what();
  }
  // CRLF line ends and a last line without a newline, as Python's readline reads them.
  const auto crlf = write_file(dir / "crlf.txt", "[PAD]\r\n[UNK]\r\n[CLS]\r\n[SEP]\r\n[MASK]\r\nhello");
  auto tok = registry().create_tokenizer("bert-wordpiece-lower", vocab_section(crlf));
  EXPECT_EQ(tok->vocab_size(), 6 + 2);
  EXPECT_EQ(tok->encode("Hello"), (std::vector<int32_t>{5}));
}

TEST(BertWordPiece, BadInputIsAnErrorNotACrash) {
  auto tok = registry().create_tokenizer("bert-wordpiece-lower", vocab_section(kUncasedVocab));
  try {
    tok->encode("ok \xC3 broken");
    FAIL() << "encoded invalid UTF-8";
  } catch (const megahost::core::Error& e) {
    EXPECT_NE(std::string(e.what()).find("not valid UTF-8 (byte 3)"), std::string::npos) << e.what();
  }
  EXPECT_THROW(tok->encode("\xED\xA0\x80"), megahost::core::Error);  // a UTF-16 surrogate
  EXPECT_THROW(tok->decode({12131}), megahost::core::Error);
  EXPECT_THROW(tok->decode({-1}), megahost::core::Error);
  EXPECT_THROW(registry().create_tokenizer("bert-wordpiece-lower", section("merge_file = 'x'\n")),
               megahost::core::Error);  // vocab_file missing, merge_file unknown
  EXPECT_THROW(registry().create_tokenizer("bert-wordpiece-lower", section("vocab_file = '" + kUncasedVocab.string() +
                                                                            "'\nvocab_extra_ids = -1\n")),
               megahost::core::Error);
}

TEST(BertWordPiece, ThreadsSharingOneInstanceGetTheSameIds) {
  auto tok = registry().create_tokenizer("bert-wordpiece-lower", vocab_section(kUncasedVocab));
  const auto lines = read_golden(kGoldenDir / "bert_wordpiece_lower_ids.jsonl");
  std::vector<int> bad(2, 0);
  std::vector<std::thread> pool;
  for (int t = 0; t < 2; ++t)
    pool.emplace_back([&, t] {
      for (int rep = 0; rep < 5; ++rep)
        for (const auto& l : lines) bad[t] += tok->encode(l.text) != l.ids;
    });
  for (auto& th : pool) th.join();
  EXPECT_EQ(bad[0] + bad[1], 0);
}
