// GPT-2 byte-level BPE, tested on the C++ class directly (no plugin loading):
//  - pre-tokenizer splits and Unicode classes against Python `regex` (cases computed with it),
//  - BPE rules on a tiny synthetic vocabulary (always runs),
//  - every line of tests/data/golden/gpt2_bpe_ids.jsonl with the real GPT-2 files (skipped when
//    .data/npm/gpt2 has not been fetched), round trips, 8 threads sharing one instance,
//  - load errors that name the file and line.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "bpe_tokenizer.h"
#include "pretokenizer.h"
#include "unicode_classes.h"

namespace fs = std::filesystem;
using megahost::tokenizers::BpeLoadError;
using megahost::tokenizers::Gpt2BpeTokenizer;
namespace tk = megahost::tokenizers;

namespace {

const fs::path kGpt2Dir = fs::path(MEGAHOST_FETCHED_DATA_DIR) / "npm" / "gpt2" / "package";
const fs::path kGolden = fs::path(MEGAHOST_TEST_DATA_DIR) / "golden" / "gpt2_bpe_ids.jsonl";

bool have_gpt2_files() { return fs::exists(kGpt2Dir / "encoder.json") && fs::exists(kGpt2Dir / "vocab.bpe"); }

struct GoldenLine {
  std::string text;
  std::vector<int32_t> ids;
};

std::vector<GoldenLine> read_golden() {
  std::vector<GoldenLine> lines;
  std::ifstream f(kGolden);
  std::string line;
  while (std::getline(f, line)) {
    if (line.empty()) continue;
    const auto j = nlohmann::json::parse(line);
    lines.push_back({j.at("text").get<std::string>(), j.at("ids").get<std::vector<int32_t>>()});
  }
  return lines;
}

std::vector<std::string> split(std::string_view text) {
  std::vector<std::string> pieces;
  tk::gpt2_split(text, [&](std::string_view p) { pieces.emplace_back(p); });
  return pieces;
}

// A character of GPT-2's byte alphabet, as UTF-8 (what encoder.json and vocab.bpe are written in).
std::string alpha(unsigned char b) {
  const uint32_t cp = tk::gpt2_byte_to_unicode(b);
  std::string s;
  if (cp < 0x80) {
    s.push_back(static_cast<char>(cp));
  } else {
    s.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    s.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
  return s;
}
std::string alpha(std::string_view bytes) {
  std::string s;
  for (unsigned char b : bytes) s += alpha(b);
  return s;
}

// A scratch folder, removed at the end of the test.
struct TempDir {
  fs::path path;
  TempDir() {
    static int counter = 0;
    path = fs::temp_directory_path() /
           ("megahost-bpe-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  fs::path write(const std::string& name, const std::string& content) const {
    std::ofstream(path / name, std::ios::binary) << content;
    return path / name;
  }
};

// encoder.json with the 256 byte tokens (id = byte) plus `extra` tokens (raw bytes) from 256 on.
std::string synthetic_vocab(const std::vector<std::string>& extra, bool with_eod = true) {
  nlohmann::json j = nlohmann::json::object();
  for (int b = 0; b < 256; ++b) j[alpha(static_cast<unsigned char>(b))] = b;
  int id = 256;
  for (const auto& t : extra) j[alpha(t)] = id++;
  if (with_eod) j["<|endoftext|>"] = id;
  return j.dump();
}

// vocab.bpe with a #version line and the given merges (raw bytes, "left right").
std::string synthetic_merges(const std::vector<std::pair<std::string, std::string>>& merges) {
  std::string s = "#version: 0.2\n";
  for (const auto& [l, r] : merges) s += alpha(l) + " " + alpha(r) + "\n";
  return s;
}

}  // namespace

// ---- pre-tokenizer and Unicode classes (no data needed) ----

TEST(Gpt2Pretokenizer, MatchesPythonRegexSplits) {
  // Expected pieces computed with Python `regex` and GPT-2's pattern.
  EXPECT_EQ(split("Hello  world"), (std::vector<std::string>{"Hello", " ", " world"}));
  EXPECT_EQ(split("I'm can't WE'LL"), (std::vector<std::string>{"I", "'m", " can", "'t", " WE", "'", "LL"}));
  EXPECT_EQ(split("a\n\n b"), (std::vector<std::string>{"a", "\n\n", " b"}));
  EXPECT_EQ(split("  x  "), (std::vector<std::string>{" ", " x", "  "}));
  EXPECT_EQ(split("x!!'s"), (std::vector<std::string>{"x", "!!'", "s"}));
  EXPECT_EQ(split(" \u00a0y"), (std::vector<std::string>{" ", "\u00a0", "y"}));
  EXPECT_EQ(split("ab12 34c"), (std::vector<std::string>{"ab", "12", " 34", "c"}));
  EXPECT_EQ(split("\t\ttab"), (std::vector<std::string>{"\t", "\t", "tab"}));
  EXPECT_EQ(split("end   "), (std::vector<std::string>{"end", "   "}));
  EXPECT_EQ(split("\u4e2d\u6587 \U0001F600!"), (std::vector<std::string>{"\u4e2d\u6587", " \U0001F600!"}));
  EXPECT_EQ(split("'"), (std::vector<std::string>{"'"}));
  EXPECT_EQ(split(" 's"), (std::vector<std::string>{" '", "s"}));
  EXPECT_TRUE(split("").empty());
}

TEST(Gpt2Pretokenizer, PiecesCoverArbitraryBytes) {
  std::mt19937 rng(7);
  for (int round = 0; round < 200; ++round) {
    std::string s(rng() % 64, '\0');
    for (char& c : s) c = static_cast<char>(rng() & 0xFF);
    std::string joined;
    for (const auto& p : split(s)) {
      ASSERT_FALSE(p.empty());
      joined += p;
    }
    EXPECT_EQ(joined, s);
  }
}

TEST(Gpt2UnicodeClasses, RegexClasses) {
  EXPECT_EQ(tk::char_class('a'), tk::kLetter);
  EXPECT_EQ(tk::char_class('7'), tk::kNumber);
  EXPECT_EQ(tk::char_class('_'), tk::kOther);
  EXPECT_EQ(tk::char_class(0x00A0), tk::kSpace);   // no-break space is White_Space
  EXPECT_EQ(tk::char_class(0x001C), tk::kOther);   // str.isspace() says space; regex's \s does not
  EXPECT_EQ(tk::char_class(0x200B), tk::kOther);   // zero width space is not White_Space
  EXPECT_EQ(tk::char_class(0x3000), tk::kSpace);
  EXPECT_EQ(tk::char_class(0x0663), tk::kNumber);  // Arabic-Indic three
  EXPECT_EQ(tk::char_class(0x00B2), tk::kNumber);  // superscript two (No)
  EXPECT_EQ(tk::char_class(0x4E2D), tk::kLetter);
  EXPECT_EQ(tk::char_class(0x0301), tk::kOther);   // combining acute accent (Mn)
  EXPECT_EQ(tk::char_class(0x10400), tk::kLetter);  // Deseret, outside the BMP
  EXPECT_EQ(tk::char_class(0x1F600), tk::kOther);   // emoji
  EXPECT_EQ(tk::char_class(0x110000), tk::kOther);
}

// ---- BPE rules on a synthetic vocabulary (no data needed) ----

TEST(Gpt2BpeSynthetic, MergesByRank) {
  TempDir dir;
  // ids: 256 "ab", 257 "bc", 258 "abc", 259 "<|endoftext|>"
  const auto vocab = dir.write("v.json", synthetic_vocab({"ab", "bc", "abc"}));
  const auto merges = dir.write("m.bpe", synthetic_merges({{"b", "c"}, {"a", "b"}, {"ab", "c"}}));
  Gpt2BpeTokenizer tok(vocab.string(), merges.string());
  EXPECT_EQ(tok.vocab_size(), 260);
  EXPECT_EQ(tok.num_merges(), 3u);
  ASSERT_TRUE(tok.eod_id().has_value());
  EXPECT_EQ(*tok.eod_id(), 259);
  // "bc" has the best rank, so "abc" never becomes one token: a + bc.
  EXPECT_EQ(tok.encode("abc"), (std::vector<int32_t>{'a', 257}));
  EXPECT_EQ(tok.encode("ab"), (std::vector<int32_t>{256}));
  // Every occurrence of the best pair merges left to right: "abab" -> ab ab.
  EXPECT_EQ(tok.encode("abab"), (std::vector<int32_t>{256, 256}));
  // Pieces never merge across the split: "a" and " b" are separate pieces.
  EXPECT_EQ(tok.encode("a b"), (std::vector<int32_t>{'a', ' ', 'b'}));
  EXPECT_EQ(tok.decode(std::vector<int32_t>{256, 259}), "ab<|endoftext|>");
}

TEST(Gpt2BpeSynthetic, CreationOrderIsDetected) {
  TempDir dir;
  const auto vocab = dir.write("v.json", synthetic_vocab({"ab", "abc"}));
  Gpt2BpeTokenizer ordered(vocab.string(), dir.write("m1.bpe", synthetic_merges({{"a", "b"}, {"ab", "c"}})).string());
  EXPECT_TRUE(ordered.merges_in_creation_order());
  // "ab c" ranks before the merge that builds "ab": the heap shortcut would not be exact, so
  // every piece must go through GPT-2's own loop.
  Gpt2BpeTokenizer unordered(vocab.string(), dir.write("m2.bpe", synthetic_merges({{"ab", "c"}, {"a", "b"}})).string());
  EXPECT_FALSE(unordered.merges_in_creation_order());
  const std::string piece = std::string(100, 'a') + "bcabcabc";
  std::vector<int32_t> fast, reference;
  unordered.bpe_piece(piece, fast);
  unordered.bpe_piece_reference(piece, reference);
  EXPECT_EQ(fast, reference);
}

TEST(Gpt2BpeSynthetic, NoEodTokenIsAllowed) {
  TempDir dir;
  const auto vocab = dir.write("v.json", synthetic_vocab({}, /*with_eod=*/false));
  const auto merges = dir.write("m.bpe", "#version: 0.2\n");
  Gpt2BpeTokenizer tok(vocab.string(), merges.string());
  EXPECT_FALSE(tok.eod_id().has_value());
  EXPECT_EQ(tok.vocab_size(), 256);
}

TEST(Gpt2BpeSynthetic, DecodeRejectsUnknownIds) {
  TempDir dir;
  Gpt2BpeTokenizer tok(dir.write("v.json", synthetic_vocab({})).string(),
                       dir.write("m.bpe", "#version: 0.2\n").string());
  std::string out = "keep";
  const int32_t bad[] = {65, 257};
  try {
    tok.decode(bad, 2, out);
    FAIL() << "decode accepted id 257";
  } catch (const megahost::sdk::Error& e) {
    EXPECT_EQ(e.code(), MH_ERR_INVALID_ARG);
    EXPECT_NE(std::string(e.what()).find("257"), std::string::npos) << e.what();
  }
  EXPECT_EQ(out, "keep");  // unchanged on error
  const int32_t negative[] = {-1};
  EXPECT_THROW(tok.decode(negative, 1, out), megahost::sdk::Error);
}

// ---- load errors ----

TEST(Gpt2BpeErrors, MissingVocabFileIsNamed) {
  TempDir dir;
  const auto merges = dir.write("m.bpe", "#version: 0.2\n");
  const std::string missing = (dir.path / "no-such-encoder.json").string();
  try {
    Gpt2BpeTokenizer tok(missing, merges.string());
    FAIL() << "loaded a missing vocab file";
  } catch (const BpeLoadError& e) {
    EXPECT_EQ(e.code(), MH_ERR_NOT_FOUND);
    EXPECT_EQ(e.key(), "vocab_file");
    EXPECT_NE(std::string(e.what()).find(missing), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("HINT"), std::string::npos) << e.what();
  }
}

TEST(Gpt2BpeErrors, MissingMergeFileIsNamed) {
  TempDir dir;
  const auto vocab = dir.write("v.json", synthetic_vocab({}));
  try {
    Gpt2BpeTokenizer tok(vocab.string(), (dir.path / "nope.bpe").string());
    FAIL() << "loaded a missing merges file";
  } catch (const BpeLoadError& e) {
    EXPECT_EQ(e.key(), "merge_file");
    EXPECT_NE(std::string(e.what()).find("nope.bpe"), std::string::npos) << e.what();
  }
}

TEST(Gpt2BpeErrors, BadJsonNamesFileAndLine) {
  TempDir dir;
  const auto vocab = dir.write("v.json", "{\"a\": 0,\n \"b\": ,\n}");
  const auto merges = dir.write("m.bpe", "#version: 0.2\n");
  try {
    Gpt2BpeTokenizer tok(vocab.string(), merges.string());
    FAIL() << "loaded malformed JSON";
  } catch (const BpeLoadError& e) {
    const std::string msg = e.what();
    EXPECT_EQ(e.key(), "vocab_file");
    EXPECT_NE(msg.find(vocab.string()), std::string::npos) << msg;
    EXPECT_NE(msg.find("not valid JSON (line 2)"), std::string::npos) << msg;
  }
}

TEST(Gpt2BpeErrors, VocabWithoutByteTokensIsRejected) {
  TempDir dir;
  const auto vocab = dir.write("v.json", R"({"a": 0, "b": 1})");
  const auto merges = dir.write("m.bpe", "#version: 0.2\n");
  try {
    Gpt2BpeTokenizer tok(vocab.string(), merges.string());
    FAIL() << "loaded a vocabulary without byte tokens";
  } catch (const BpeLoadError& e) {
    EXPECT_NE(std::string(e.what()).find("no token for byte"), std::string::npos) << e.what();
  }
}

TEST(Gpt2BpeErrors, MalformedMergesLineNamesFileAndLine) {
  TempDir dir;
  const auto vocab = dir.write("v.json", synthetic_vocab({"ab"}));
  const auto merges = dir.write("m.bpe", "#version: 0.2\n" + alpha("a") + " " + alpha("b") + "\nabc\n");
  try {
    Gpt2BpeTokenizer tok(vocab.string(), merges.string());
    FAIL() << "loaded a merges line without a space";
  } catch (const BpeLoadError& e) {
    const std::string msg = e.what();
    EXPECT_EQ(e.code(), MH_ERR_INVALID_ARG);
    EXPECT_EQ(e.key(), "merge_file");
    EXPECT_NE(msg.find(merges.string() + "' line 3"), std::string::npos) << msg;
    EXPECT_NE(msg.find("HINT"), std::string::npos) << msg;
  }
}

TEST(Gpt2BpeErrors, MergeOfUnknownTokensNamesLine) {
  TempDir dir;
  const auto vocab = dir.write("v.json", synthetic_vocab({}));  // has no "ab"
  const auto merges = dir.write("m.bpe", "#version: 0.2\n" + alpha("a") + " " + alpha("b") + "\n");
  try {
    Gpt2BpeTokenizer tok(vocab.string(), merges.string());
    FAIL() << "loaded a merge whose result is not in the vocabulary";
  } catch (const BpeLoadError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("line 2"), std::string::npos) << msg;
    EXPECT_NE(msg.find("not a token of the vocab_file"), std::string::npos) << msg;
  }
}

// ---- the real GPT-2 files ----

class Gpt2BpeReal : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (have_gpt2_files())
      tok_ = new Gpt2BpeTokenizer((kGpt2Dir / "encoder.json").string(), (kGpt2Dir / "vocab.bpe").string());
  }
  static void TearDownTestSuite() {
    delete tok_;
    tok_ = nullptr;
  }
  void SetUp() override {
    if (tok_ == nullptr) GTEST_SKIP() << "GPT-2 files not fetched: " << kGpt2Dir << " (scripts/fetch_data.sh)";
  }
  static Gpt2BpeTokenizer* tok_;
};
Gpt2BpeTokenizer* Gpt2BpeReal::tok_ = nullptr;

TEST_F(Gpt2BpeReal, VocabularyAndEod) {
  EXPECT_EQ(tok_->vocab_size(), 50257);
  EXPECT_EQ(tok_->num_merges(), 50000u);
  ASSERT_TRUE(tok_->eod_id().has_value());
  EXPECT_EQ(*tok_->eod_id(), 50256);
  // The literal text is plain text, not the special id.
  const auto ids = tok_->encode("<|endoftext|>");
  EXPECT_GT(ids.size(), 1u);
  EXPECT_EQ(tok_->decode(std::vector<int32_t>{50256}), "<|endoftext|>");
}

TEST_F(Gpt2BpeReal, GoldenIdsAllLines) {
  const auto golden = read_golden();
  ASSERT_EQ(golden.size(), 205u) << kGolden;
  size_t mismatches = 0;
  for (size_t i = 0; i < golden.size(); ++i) {
    const auto ids = tok_->encode(golden[i].text);
    if (ids != golden[i].ids) ++mismatches;
    EXPECT_EQ(ids, golden[i].ids) << "golden line " << i + 1 << ": " << golden[i].text.substr(0, 80);
  }
  EXPECT_EQ(mismatches, 0u);
}

TEST_F(Gpt2BpeReal, GoldenIdsWithoutCache) {
  // The same without the cache, through both BPE paths, so a cache bug cannot hide a BPE bug
  // (and vice versa).
  for (const auto& g : read_golden()) {
    std::vector<int32_t> ids, reference;
    tk::gpt2_split(g.text, [&](std::string_view p) {
      tok_->bpe_piece(p, ids);
      tok_->bpe_piece_reference(p, reference);
    });
    EXPECT_EQ(ids, g.ids) << g.text.substr(0, 80);
    EXPECT_EQ(reference, g.ids) << g.text.substr(0, 80);
  }
}

TEST_F(Gpt2BpeReal, LongPiecesHeapEqualsGpt2Loop) {
  // Long letter runs take the O(n log n) heap path; it must give GPT-2's ids exactly.
  ASSERT_TRUE(tok_->merges_in_creation_order());
  std::mt19937 rng(5);
  const char* alphabets[] = {"abcdefghijklmnopqrstuvwxyz", "etaoinshrdlu", "ab", "\xC3\xA9\xC3\xA8" "e"};
  for (int round = 0; round < 60; ++round) {
    const std::string alphabet = alphabets[round % 4];
    std::string piece;
    for (size_t k = 0, n = 64 + rng() % 3000; k < n; ++k) piece.push_back(alphabet[rng() % alphabet.size()]);
    std::vector<int32_t> fast, reference;
    tok_->bpe_piece(piece, fast);
    tok_->bpe_piece_reference(piece, reference);
    ASSERT_EQ(fast, reference) << "round " << round << ", " << piece.size() << " bytes";
    EXPECT_EQ(tok_->decode(fast), piece);
  }
}

TEST_F(Gpt2BpeReal, RoundTripGoldenTexts) {
  for (const auto& g : read_golden()) EXPECT_EQ(tok_->decode(tok_->encode(g.text)), g.text);
}

TEST_F(Gpt2BpeReal, RoundTripArbitraryBytes) {
  std::mt19937 rng(1234);
  for (int round = 0; round < 300; ++round) {
    std::string s(rng() % 200, '\0');
    for (char& c : s) c = static_cast<char>(rng() & 0xFF);  // mostly invalid UTF-8
    const auto ids = tok_->encode(s);
    for (int32_t id : ids) ASSERT_TRUE(id >= 0 && id < 50256) << id;
    EXPECT_EQ(tok_->decode(ids), s);
  }
}

TEST_F(Gpt2BpeReal, EightThreadsShareOneInstance) {
  const auto golden = read_golden();
  // A fresh instance, so the threads race on an empty cache and insert the same pieces at once.
  Gpt2BpeTokenizer shared((kGpt2Dir / "encoder.json").string(), (kGpt2Dir / "vocab.bpe").string());
  constexpr int kThreads = 8;
  std::vector<std::vector<std::vector<int32_t>>> results(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      auto& mine = results[t];
      mine.resize(golden.size());
      for (int rep = 0; rep < 3; ++rep) {
        // Each thread starts at a different line so they insert different pieces at once.
        for (size_t k = 0; k < golden.size(); ++k) {
          const size_t i = (k + static_cast<size_t>(t) * 25) % golden.size();
          mine[i] = shared.encode(golden[i].text);
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < kThreads; ++t)
    for (size_t i = 0; i < golden.size(); ++i) ASSERT_EQ(results[t][i], golden[i].ids) << "thread " << t << " line " << i + 1;
}

TEST_F(Gpt2BpeReal, CacheEvictionUnderThreadsKeepsIds) {
  // More distinct pieces than the cache holds (64 shards x 2048), so shards fill up and are
  // cleared while 4 threads read and insert. Every result must equal BPE without the cache.
  Gpt2BpeTokenizer shared((kGpt2Dir / "encoder.json").string(), (kGpt2Dir / "vocab.bpe").string());
  std::mt19937 rng(99);
  std::vector<std::string> words(200000);
  for (auto& w : words) {
    w = " ";
    for (size_t k = 0, n = 3 + rng() % 9; k < n; ++k) w.push_back(static_cast<char>('a' + rng() % 26));
  }
  constexpr int kThreads = 4;
  std::vector<int> bad(kThreads, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::vector<int32_t> cached, direct;
      for (size_t k = 0; k < words.size(); ++k) {
        const std::string& w = words[(k * (t + 1) + static_cast<size_t>(t) * 7919) % words.size()];
        cached.clear();
        direct.clear();
        shared.encode(w, cached);
        shared.bpe_piece(w, direct);
        if (cached != direct) ++bad[t];
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(bad[t], 0) << "thread " << t;
}
