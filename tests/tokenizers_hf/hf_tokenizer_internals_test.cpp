// The hf-tokenizer algorithm without the plugin layer: the hand-written split scanners against
// the regex semantics, BPE details (ranks, ignore_merges, byte fallback, unk), the metaspace
// shortcut against the plain algorithm, and the refusal of everything not implemented. Uses
// small synthetic tokenizer.json files, so it runs without fetched data (one test uses Llama-2's
// file when it is there).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "hf_tokenizer.h"
#include "nfc.h"
#include "pretokenizer.h"
#include "tiny_tokenizer_json.h"

namespace fs = std::filesystem;
using megahost::hf::HfTokenizer;
using megahost::hf::LoadError;
using megahost::hf::SplitPattern;
using nlohmann::json;

namespace {

std::vector<std::string> pieces(SplitPattern p, const std::string& text) {
  std::vector<size_t> ends;
  megahost::hf::split_ends(p, text, ends);
  std::vector<std::string> out;
  size_t begin = 0;
  for (size_t e : ends) out.push_back(text.substr(begin, e - begin)), begin = e;
  return out;
}

using Pieces = std::vector<std::string>;

}  // namespace

// Expected pieces follow the regexes' leftmost-first, backtracking semantics (see pretokenizer.h).
TEST(SplitScanner, Llama3Pattern) {
  const auto L = SplitPattern::kLlama3;
  EXPECT_EQ(pieces(L, "Hello world"), (Pieces{"Hello", " world"}));
  EXPECT_EQ(pieces(L, "I'm I'M don't"), (Pieces{"I", "'m", " I", "'M", " don", "'t"}));  // (?i:...)
  EXPECT_EQ(pieces(L, "1234567"), (Pieces{"123", "456", "7"}));                           // \p{N}{1,3}
  EXPECT_EQ(pieces(L, "a  b"), (Pieces{"a", " ", " b"}));                                 // \s+(?!\S)
  EXPECT_EQ(pieces(L, "x  \n  y"), (Pieces{"x", "  \n", " ", " y"}));                     // \s*[\r\n]+
  EXPECT_EQ(pieces(L, "trailing   "), (Pieces{"trailing", "   "}));
  EXPECT_EQ(pieces(L, "!!!\n\nx"), (Pieces{"!!!\n\n", "x"}));  //  ?[^\s\p{L}\p{N}]+[\r\n]*
  EXPECT_EQ(pieces(L, "\"For"), (Pieces{"\"For"}));            // [^\r\n\p{L}\p{N}]?\p{L}+
  EXPECT_EQ(pieces(L, "\tx\nx"), (Pieces{"\tx", "\n", "x"}));
  EXPECT_EQ(pieces(L, "x\r\n"), (Pieces{"x", "\r\n"}));
  EXPECT_EQ(pieces(L, "Привет мир"), (Pieces{"Привет", " мир"}));
  EXPECT_EQ(pieces(L, "日本語123"), (Pieces{"日本語", "123"}));
  EXPECT_EQ(pieces(L, "a\u00a0b"), (Pieces{"a", "\u00a0b"}));  // NBSP is \s but not [\r\n]
  EXPECT_EQ(pieces(L, "a\xff" "b"), (Pieces{"a", "\xff" "b"}));  // a malformed byte is "other"
  EXPECT_EQ(pieces(L, " ?!"), (Pieces{" ?!"}));
  EXPECT_EQ(pieces(L, ""), (Pieces{}));
}

TEST(SplitScanner, Gpt2Pattern) {
  const auto G = SplitPattern::kGpt2;
  EXPECT_EQ(pieces(G, "I'm I'M"), (Pieces{"I", "'m", " I", "'", "M"}));  // case-sensitive
  EXPECT_EQ(pieces(G, "1234567"), (Pieces{"1234567"}));
  EXPECT_EQ(pieces(G, "x  \n  y"), (Pieces{"x", "  \n ", " y"}));
  EXPECT_EQ(pieces(G, "!!!\n\nx"), (Pieces{"!!!", "\n", "\n", "x"}));
  EXPECT_EQ(pieces(G, "\"For"), (Pieces{"\"", "For"}));
  EXPECT_EQ(pieces(G, "a\u00a0b"), (Pieces{"a", "\u00a0", "b"}));
  EXPECT_EQ(pieces(G, "a\xff" "b"), (Pieces{"a", "\xff", "b"}));
}

TEST(SplitScanner, Qwen2PatternTakesOneDigit) {
  const auto Q = SplitPattern::kQwen2;
  EXPECT_EQ(pieces(Q, "2024 12 ab"), (Pieces{"2", "0", "2", "4", " ", "1", "2", " ab"}));
  EXPECT_EQ(pieces(Q, "I'M x"), (Pieces{"I", "'M", " x"}));
}

TEST(SplitScanner, PiecesTileAnyBytes) {
  std::mt19937 rng(7);
  const std::string alphabet[] = {"a", "Z", "7", " ", "\n", "\r", "\t", "'", "s", "!", "é", "日", "\u00a0", "\xff", "\x80"};
  for (int round = 0; round < 300; ++round) {
    std::string text;
    for (int k = 0, n = static_cast<int>(rng() % 40); k < n; ++k) text += alphabet[rng() % std::size(alphabet)];
    for (SplitPattern p : {SplitPattern::kLlama3, SplitPattern::kQwen2, SplitPattern::kGpt2}) {
      std::string joined;
      for (const std::string& s : pieces(p, text)) {
        EXPECT_FALSE(s.empty());
        joined += s;
      }
      EXPECT_EQ(joined, text);
    }
  }
}

TEST(SplitScanner, RecognizesOnlyTheImplementedRegexes) {
  EXPECT_EQ(megahost::hf::recognize_split_regex(hf_test::kLlama3Regex), SplitPattern::kLlama3);
  EXPECT_EQ(megahost::hf::recognize_split_regex(
                "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"),
            SplitPattern::kGpt2);
  EXPECT_FALSE(megahost::hf::recognize_split_regex(std::string(hf_test::kLlama3Regex) + "|x"));
  EXPECT_FALSE(megahost::hf::recognize_split_regex("\\s+"));
}

// Expected values: Python's unicodedata.normalize("NFC", ...) (Unicode 14).
TEST(Nfc, MatchesPythonUnicodedata) {
  const std::pair<const char*, const char*> cases[] = {
      {"cafe\u0301", "caf\u00e9"},
      {"\u212b", "\u00c5"},                         // singleton: Angstrom sign -> A with ring
      {"\u2126", "\u03a9"},
      {"\u1100\u1161\u11a8", "\uac01"},              // Hangul L V T -> LVT
      {"\uac00\u11a8", "\uac01"},                    // LV T -> LVT
      {"a\u0328\u0301", "\u0105\u0301"},
      {"e\u0301\u0323", "\u1eb9\u0301"},             // reordered by class, then composed
      {"q\u0307\u0323", "q\u0323\u0307"},            // reordered, nothing to compose
      {"\u0344", "\u0308\u0301"},                    // non-starter decomposition
      {"\u0958", "\u0915\u093c"},                    // composition exclusion
      {"\ufb2c", "\u05e9\u05bc\u05c1"},
      {"x\u0301\u0301y", "x\u0301\u0301y"},
      {"\u0301start", "\u0301start"},
      {"A\u030a\u0301", "\u01fa"},
      {"\u1e9b\u0323", "\u1e9b\u0323"},
      {"\U0001d15e", "\U0001d157\U0001d165"},
      {"plain ASCII", "plain ASCII"},
      {"a\xff\u0301", "a\xff\u0301"},               // a malformed byte blocks composition
  };
  for (const auto& [in, expected] : cases) {
    std::string out;
    megahost::hf::nfc(in, out);
    EXPECT_EQ(out, expected) << in;
  }
}

TEST(HfBpe, NormalizedAddedTokensAreFoundAfterTheNormalizer) {
  json j = hf_test::tiny_byte_level();
  j["normalizer"] = {{"type", "NFC"}};
  auto added = [](int id, const char* content, bool normalized) {
    return json{{"id", id}, {"content", content}, {"single_word", false}, {"lstrip", false}, {"rstrip", false},
                {"normalized", normalized}, {"special", false}};
  };
  j["added_tokens"].push_back(added(260, "\u00e9", true));   // precomposed e acute, in normalized text
  j["added_tokens"].push_back(added(261, "\u212b", false));  // Angstrom sign, in raw text (NFC would change it)
  const HfTokenizer tok(hf_test::write_temp(j, "normalized_added"));
  EXPECT_EQ(tok.encode("e\u0301", false), (std::vector<int32_t>{260}));
  EXPECT_EQ(tok.encode("\u00e9", false), (std::vector<int32_t>{260}));
  EXPECT_EQ(tok.encode("\u212b\u00c5", false), (std::vector<int32_t>{261, 0xC3, 0x85}));
}

TEST(HfBpe, ByteLevelMergesIgnoreMergesAndAddedTokens) {
  for (bool pairs : {false, true}) {  // "a b" (tokenizers < 0.20) and ["a", "b"] merges
    const HfTokenizer tok(hf_test::write_temp(hf_test::tiny_byte_level(pairs), pairs ? "bl_pairs" : "bl_strings"));
    EXPECT_EQ(tok.vocab_size(), 260);
    EXPECT_EQ(tok.encode("the", false), (std::vector<int32_t>{'t', 257}));          // (h e) only
    EXPECT_EQ(tok.encode(" then", false), (std::vector<int32_t>{258, 'n'}));        // Ġ t, h e, Ġt he
    EXPECT_EQ(tok.encode(" the", false), (std::vector<int32_t>{258}));              // whole piece in vocab
    EXPECT_EQ(tok.encode(" the", true), (std::vector<int32_t>{259, 258}));          // template adds it first
    EXPECT_EQ(tok.encode("<|endoftext|> the<|endoftext|>", false), (std::vector<int32_t>{259, 258, 259}));
    EXPECT_EQ(tok.decode({259, 258, 'n'}, false), "<|endoftext|> then");
    EXPECT_EQ(tok.decode({259, 258, 'n'}, true), " then");
    EXPECT_EQ(tok.special_token("eos"), 259);  // no tokenizer_config.json: well-known names
    EXPECT_EQ(tok.special_token("eod"), 259);
    EXPECT_EQ(tok.special_token("bos"), std::nullopt);
  }
}

TEST(HfBpe, ByteLevelRoundTripsAnyBytes) {
  const HfTokenizer tok(hf_test::write_temp(hf_test::tiny_byte_level(), "bl_bytes"));
  std::mt19937 rng(11);
  for (int round = 0; round < 200; ++round) {
    std::string text;
    for (int k = 0, n = static_cast<int>(rng() % 30); k < n; ++k) text.push_back(static_cast<char>(rng() % 256));
    if (text.find("<|endoftext|>") != std::string::npos) continue;
    EXPECT_EQ(tok.decode(tok.encode(text, false), false), text);
  }
}

TEST(HfBpe, RanksDecideTheOrderLeftmostFirst) {
  auto with_merges = [](const json& merges, const std::string& name) {
    json j = hf_test::tiny_byte_fallback();
    j["normalizer"] = nullptr;
    j["model"]["vocab"]["c"] = 265;
    j["model"]["vocab"]["bc"] = 266;
    j["model"]["vocab"]["aa"] = 267;
    j["model"]["merges"] = merges;
    return HfTokenizer(hf_test::write_temp(j, name));
  };
  EXPECT_EQ(with_merges({"b c", "a b"}, "r1").encode("abc", false), (std::vector<int32_t>{260, 266}));
  EXPECT_EQ(with_merges({"a b", "b c"}, "r2").encode("abc", false), (std::vector<int32_t>{263, 265}));
  EXPECT_EQ(with_merges({"a a"}, "r3").encode("aaa", false), (std::vector<int32_t>{267, 260}));
}

TEST(HfBpe, ByteFallbackUnkAndNormalizer) {
  const HfTokenizer tok(hf_test::write_temp(hf_test::tiny_byte_fallback(), "bf"));
  EXPECT_EQ(tok.encode("ab", false), (std::vector<int32_t>{264}));            // "▁ab"
  EXPECT_EQ(tok.encode("ab ab", true), (std::vector<int32_t>{1, 264, 264}));  // <s> ▁ab ▁ab
  EXPECT_EQ(tok.encode("", true), (std::vector<int32_t>{1}));                 // Prepend skips empty text
  EXPECT_EQ(tok.encode("é", false), (std::vector<int32_t>{259, 3 + 0xC3, 3 + 0xA9}));  // <0xC3> <0xA9>
  EXPECT_EQ(tok.decode({259, 3 + 0xC3, 3 + 0xA9}, false), "é");                          // Strip eats the ▁
  EXPECT_EQ(tok.decode({1, 264}, false), "<s> ab");  // HF's (legacy Llama) rendering of <s>
  EXPECT_EQ(tok.decode({1, 264}, true), "ab");
  // Bytes that are not UTF-8 go through byte fallback and come back exactly (HF would decode
  // them as U+FFFD).
  EXPECT_EQ(tok.decode(tok.encode("a\xff", false), false), "a\xff");
  EXPECT_EQ(tok.special_token("bos"), 1);
  EXPECT_EQ(tok.special_token("eos"), 2);
  EXPECT_EQ(tok.special_token("eod"), 2);
  EXPECT_EQ(tok.special_token("unk"), 0);

  json j = hf_test::tiny_byte_fallback();
  j["model"]["byte_fallback"] = false;
  EXPECT_EQ(HfTokenizer(hf_test::write_temp(j, "unk_fused")).encode("éé", false), (std::vector<int32_t>{259, 0}));
  j["model"]["fuse_unk"] = false;
  EXPECT_EQ(HfTokenizer(hf_test::write_temp(j, "unk")).encode("éé", false), (std::vector<int32_t>{259, 0, 0}));
  EXPECT_THROW(HfTokenizer(hf_test::write_temp(j, "unk")).encode("\xff", false), megahost::sdk::Error);
}

TEST(HfBpe, MetaspaceSplitEqualsWholePieceBpe) {
  const fs::path file = fs::path(MEGAHOST_FETCHED_DATA_DIR) / "npm/llama2/package/models/tokenizer.json";
  const fs::path golden = fs::path(MEGAHOST_TEST_DATA_DIR) / "golden/hf_llama2_ids.jsonl";
  if (!fs::exists(file)) GTEST_SKIP() << "not fetched: " << file << " (scripts/fetch_data.sh)";
  const HfTokenizer tok(file.string());
  ASSERT_TRUE(tok.model().splits_at_metaspace());
  std::ifstream in(golden);
  int lines = 0;
  for (std::string line; std::getline(in, line); ++lines) {
    std::string text = "▁" + json::parse(line).at("text").get<std::string>();
    for (size_t p; (p = text.find(' ')) != std::string::npos;) text.replace(p, 1, "▁");
    std::vector<int32_t> fast, plain;
    tok.model().tokenize(text, fast);
    tok.model().tokenize_uncached(text, plain);
    EXPECT_EQ(fast, plain) << "line " << lines + 1;
  }
  EXPECT_EQ(lines, 205);
}

// ---- refusals: every component that is not implemented is named, with a hint ----

namespace {

// The LoadError's message for the tiny byte-level file changed by `edit`.
std::string load_error(const std::string& name, void (*edit)(json&)) {
  json j = hf_test::tiny_byte_level();
  edit(j);
  const std::string path = hf_test::write_temp(j, name);
  try {
    HfTokenizer tok(path);
  } catch (const LoadError& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("HINT: "), std::string::npos) << e.what();
    return e.what();
  }
  ADD_FAILURE() << name << ": loaded without error";
  return {};
}

}  // namespace

TEST(HfRefusals, UnimplementedComponentsAreNamed) {
  EXPECT_NE(load_error("wordpiece", [](json& j) { j["model"]["type"] = "WordPiece"; }).find("model 'WordPiece'"),
            std::string::npos);
  EXPECT_NE(load_error("nfkc", [](json& j) { j["normalizer"] = {{"type", "NFKC"}}; }).find("normalizer 'NFKC'"),
            std::string::npos);
  EXPECT_NE(load_error("metaspace", [](json& j) { j["pre_tokenizer"] = {{"type", "Metaspace"}}; })
                .find("pre_tokenizer 'Metaspace'"),
            std::string::npos);
  EXPECT_NE(load_error("regex",
                       [](json& j) { j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "\\s+|\\w+"; })
                .find("Split"),
            std::string::npos);
  EXPECT_NE(load_error("removed",
                       [](json& j) { j["pre_tokenizer"]["pretokenizers"][0]["behavior"] = "Removed"; })
                .find("Removed"),
            std::string::npos);
  EXPECT_NE(load_error("prefix",
                       [](json& j) { j["pre_tokenizer"]["pretokenizers"][1]["add_prefix_space"] = true; })
                .find("add_prefix_space"),
            std::string::npos);
  EXPECT_NE(load_error("decoder", [](json& j) { j["decoder"] = {{"type", "WordPiece"}}; }).find("decoder 'WordPiece'"),
            std::string::npos);
  EXPECT_NE(load_error("roberta", [](json& j) { j["post_processor"] = {{"type", "RobertaProcessing"}}; })
                .find("post_processor 'RobertaProcessing'"),
            std::string::npos);
  EXPECT_NE(load_error("single_word", [](json& j) { j["added_tokens"][0]["single_word"] = true; }).find("single_word"),
            std::string::npos);
  EXPECT_NE(load_error("dropout", [](json& j) { j["model"]["dropout"] = 0.1; }).find("dropout"), std::string::npos);
  EXPECT_NE(load_error("suffix", [](json& j) { j["model"]["end_of_word_suffix"] = "</w>"; }).find("end_of_word_suffix"),
            std::string::npos);
  EXPECT_NE(load_error("merge", [](json& j) { j["model"]["merges"].push_back("Ġthe zz"); }).find("not in the vocab"),
            std::string::npos);
}

TEST(HfRefusals, BadFiles) {
  const fs::path dir = fs::path(hf_test::write_temp(json::object(), "bad")).parent_path();
  try {
    HfTokenizer((dir / "missing.json").string());
    FAIL() << "a missing file loaded";
  } catch (const LoadError& e) {
    EXPECT_EQ(e.code(), MH_ERR_NOT_FOUND);
    EXPECT_NE(std::string(e.what()).find("missing.json"), std::string::npos) << e.what();
  }
  std::ofstream(dir / "broken.json") << "{\n\"model\": [1, 2,\n";
  try {
    HfTokenizer((dir / "broken.json").string());
    FAIL() << "broken JSON loaded";
  } catch (const LoadError& e) {
    EXPECT_NE(std::string(e.what()).find("is not valid JSON (line 3"), std::string::npos) << e.what();
  }
  EXPECT_THROW(HfTokenizer((dir / "tokenizer.json").string()), LoadError);  // {} has no model
}

TEST(HfSpecialNames, FolderPathAndTokenizerConfig) {
  const std::string file = hf_test::write_temp(hf_test::tiny_byte_level(), "with_config");
  const fs::path dir = fs::path(file).parent_path();
  std::ofstream(dir / "tokenizer_config.json")
      << R"({"bos_token": {"content": "<|endoftext|>"}, "eos_token": "<|endoftext|>", "pad_token": "!"})";
  const HfTokenizer tok(dir.string());  // a folder: its tokenizer.json
  EXPECT_EQ(tok.special_token("bos"), 259);
  EXPECT_EQ(tok.special_token("eod"), 259);
  EXPECT_EQ(tok.special_token("pad"), '!');
  std::ofstream(dir / "tokenizer_config.json") << R"({"eos_token": "<|im_end|>"})";
  try {
    HfTokenizer t(file);
    FAIL() << "an eos_token outside the vocabulary was accepted";
  } catch (const LoadError& e) {
    EXPECT_NE(std::string(e.what()).find("<|im_end|>"), std::string::npos) << e.what();
  }
}
