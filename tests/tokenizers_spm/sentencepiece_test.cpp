// The sentencepiece tokenizer plugins, loaded as the host loads them (core's PluginRegistry),
// checked against the sentencepiece command-line tools as the independent reference:
// tiny models are trained here with spm_train on a few hundred lines (the golden GPT-2 test
// texts plus generated sentences), and ids must equal `spm_encode --output_format=id`, text
// `spm_decode --input_format=id`. Skipped when spm_train is not installed.
#include <gtest/gtest.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "megahost/core/config.h"
#include "megahost/core/error.h"
#include "megahost/core/plugins.h"

namespace fs = std::filesystem;
using megahost::core::parse_config_section;
using megahost::core::PluginKind;
using megahost::core::PluginRegistry;
using megahost::core::Tokenizer;
using Ids = std::vector<int32_t>;

namespace {

const std::string kSpmTrain = SPM_TRAIN;
const std::string kSpmEncode = SPM_ENCODE;
const std::string kSpmDecode = SPM_DECODE;
const fs::path kGolden = fs::path(MEGAHOST_TEST_DATA_DIR) / "golden" / "gpt2_bpe_ids.jsonl";
const std::string kMegahost = std::string(MEGAHOST_BINARY_DIR) + "/bin/megahost";

#define SKIP_WITHOUT_SPM_TOOLS()                                                                       \
  if (kSpmTrain.empty() || kSpmEncode.empty() || kSpmDecode.empty())                                   \
  GTEST_SKIP() << "spm_train/spm_encode/spm_decode not installed (Debian package sentencepiece)"

const PluginRegistry& registry() {
  static const PluginRegistry reg({MEGAHOST_BUILD_PLUGIN_DIR});
  return reg;
}

std::string sh_arg(const fs::path& p) { return "'" + p.string() + "'"; }

// Runs a shell command; returns its stdout (stderr too when asked) and exit status.
std::pair<int, std::string> shell(const std::string& cmd) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return {-1, out};
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  const int status = pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

// A per-process scratch folder, emptied at exit (no fs::remove_all: see docs/architecture.md).
struct ScratchDir {
  fs::path dir = fs::temp_directory_path() / ("megahost_spm_test_" + std::to_string(getpid()));
  ScratchDir() { fs::create_directories(dir); }
  ~ScratchDir() {
    std::error_code ec;
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(dir, ec)) files.push_back(e.path());
    for (const auto& f : files) fs::remove(f, ec);
    fs::remove(dir, ec);
  }
};
const fs::path& scratch() {
  static ScratchDir d;
  return d.dir;
}

// Training and test lines: the non-empty golden texts (newlines made spaces, as spm_* read
// lines) and generated sentences with numbers and punctuation.
const std::vector<std::string>& corpus() {
  static const std::vector<std::string> lines = [] {
    std::vector<std::string> out;
    std::ifstream in(kGolden);
    std::string line;
    while (std::getline(in, line)) {
      std::string text = nlohmann::json::parse(line).at("text").get<std::string>();
      for (char& c : text)
        if (c == '\n' || c == '\r') c = ' ';
      if (text.find_first_not_of(" \t") != std::string::npos) out.push_back(text);
    }
    const char* subjects[] = {"The jury", "A farmer", "Our city", "The committee", "Mrs. Smith", "The old ship"};
    const char* verbs[] = {"said", "reported", "found", "believed", "announced", "denied"};
    const char* objects[] = {"the election was fair", "taxes would rise", "the bridge is closed",
                             "prices fell by 12 percent", "nobody came", "the rain stopped at 4 p.m."};
    for (int i = 0; i < 216; ++i)
      out.push_back(std::string(subjects[i % 6]) + " " + verbs[(i / 6) % 6] + " that " + objects[(i / 36) % 6] +
                    (i % 4 == 0 ? "; it was " + std::to_string(1900 + i) + "." : "."));
    return out;
  }();
  return lines;
}

fs::path corpus_file() {
  const fs::path p = scratch() / "corpus.txt";
  if (!fs::exists(p)) {
    std::ofstream out(p);
    for (const auto& l : corpus()) out << l << '\n';
  }
  return p;
}

// Trains <scratch>/<name>.model once per process.
fs::path model(const std::string& name) {
  static const std::map<std::string, std::string> flags = {
      {"bpe", "--model_type=bpe --vocab_size=400"},
      {"unigram", "--model_type=unigram --vocab_size=300 --pad_id=3"},
      // Llama-style: byte fallback, no normalization, whitespace kept: every text round-trips.
      {"bytes", "--model_type=bpe --vocab_size=500 --byte_fallback=true --normalization_rule_name=identity "
                "--remove_extra_whitespaces=false"},
      {"nobos", "--model_type=bpe --vocab_size=300 --bos_id=-1"},
  };
  const fs::path prefix = scratch() / name;
  const fs::path m = prefix.string() + ".model";
  if (!fs::exists(m)) {
    const auto [rc, out] = shell(kSpmTrain + " --input=" + sh_arg(corpus_file()) + " --model_prefix=" +
                                 sh_arg(prefix) + " " + flags.at(name) + " --num_threads=1 --minloglevel=2 2>&1");
    EXPECT_EQ(rc, 0) << out;
  }
  return m;
}

// Number of pieces: spm_train writes one line per piece to <prefix>.vocab.
int64_t pieces_of(const fs::path& m) {
  std::ifstream in(fs::path(m).replace_extension(".vocab"));
  int64_t n = 0;
  for (std::string line; std::getline(in, line);) ++n;
  return n;
}

// Reference ids of every corpus line from `spm_encode --output_format=id`.
std::vector<Ids> spm_encode(const fs::path& m) {
  const auto [rc, out] = shell(kSpmEncode + " --model=" + sh_arg(m) + " --output_format=id < " + sh_arg(corpus_file()));
  EXPECT_EQ(rc, 0);
  std::vector<Ids> ids;
  std::istringstream lines(out);
  for (std::string line; std::getline(lines, line);) {
    std::istringstream words(line);
    ids.emplace_back();
    for (int32_t id; words >> id;) ids.back().push_back(id);
  }
  EXPECT_EQ(ids.size(), corpus().size());
  return ids;
}

// Reference text of each id line from `spm_decode --input_format=id`.
std::vector<std::string> spm_decode(const fs::path& m, const std::vector<Ids>& ids) {
  const fs::path in = scratch() / "ids.txt";
  {
    std::ofstream out(in);
    for (const auto& line : ids) {
      for (size_t i = 0; i < line.size(); ++i) out << (i ? " " : "") << line[i];
      out << '\n';
    }
  }
  const auto [rc, out] = shell(kSpmDecode + " --model=" + sh_arg(m) + " --input_format=id < " + sh_arg(in));
  EXPECT_EQ(rc, 0);
  std::vector<std::string> texts;
  std::istringstream lines(out);
  for (std::string line; std::getline(lines, line);) texts.push_back(line);
  return texts;
}

std::unique_ptr<Tokenizer> create(const std::string& id, const fs::path& m, const std::string& extra = "") {
  return registry().create_tokenizer(
      id, parse_config_section("tokenizer_model = '" + m.string() + "'\n" + extra, "t.toml", "tokenizer"));
}

// The message of the core::Error that creating the tokenizer throws ("" when it does not).
std::string create_error(const std::string& id, const std::string& toml) {
  try {
    registry().create_tokenizer(id, parse_config_section(toml, "t.toml", "tokenizer"));
  } catch (const megahost::core::Error& e) {
    return e.what();
  }
  return "";
}

Ids concat(Ids a, const Ids& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

}  // namespace

TEST(SentencePiecePlugin, FoundUnderMegatronNames) {
  for (const auto& r : registry().refused())
    EXPECT_NE(r.path.filename(), "libmegahost_tokenizer_sentencepiece.so") << r.reason;
  const std::pair<const char*, const char*> names[] = {{"sentencepiece", "SentencePieceTokenizer"},
                                                       {"gpt-sentencepiece", "GPTSentencePieceTokenizer"},
                                                       {"llama2-sentencepiece", "Llama2Tokenizer"}};
  for (const auto& [id, alias] : names) {
    const auto& p = registry().find(PluginKind::Tokenizer, id);
    EXPECT_EQ(&registry().find(PluginKind::Tokenizer, alias), &p) << alias;
    const auto schema = nlohmann::json::parse(p.config_schema);
    EXPECT_TRUE(schema.at("tokenizer_model").at("required").get<bool>()) << id;
    EXPECT_EQ(schema.at("tokenizer_model").at("type"), "path") << id;
  }
}

// GPTSentencePieceTokenizer: ids are exactly sp.encode_as_ids, for BPE, unigram and byte fallback.
TEST(SentencePiecePlugin, IdsEqualSpmEncode) {
  SKIP_WITHOUT_SPM_TOOLS();
  for (const char* name : {"bpe", "unigram", "bytes"}) {
    const fs::path m = model(name);
    const auto expected = spm_encode(m);
    auto gpt = create("GPTSentencePieceTokenizer", m);
    auto megatron = create("SentencePieceTokenizer", m);
    auto llama2 = create("Llama2Tokenizer", m);
    const int32_t bos = *llama2->special_token("bos");
    size_t nonempty = 0;
    for (size_t i = 0; i < expected.size(); ++i) {
      const std::string& text = corpus()[i];
      ASSERT_EQ(gpt->encode(text), expected[i]) << name << " line " << i << ": " << text;
      // No special-token text in the corpus: Megatron's SentencePieceTokenizer gives the same ids.
      ASSERT_EQ(megatron->encode(text), expected[i]) << name << " line " << i;
      ASSERT_EQ(llama2->encode(text), concat({bos}, expected[i])) << name << " line " << i;
      nonempty += !expected[i].empty();
    }
    EXPECT_GT(nonempty, 400u) << name;
    EXPECT_EQ(gpt->encode(""), Ids{});
    EXPECT_EQ(llama2->encode(""), Ids{bos});  // Megatron prepends bos to every text
  }
}

// Characters outside the tiny model: unk without byte fallback, byte pieces with it.
TEST(SentencePiecePlugin, UnknownCharactersAndByteFallback) {
  SKIP_WITHOUT_SPM_TOOLS();
  const std::string text = "ka \xE0\xAE\x95 and crab \xF0\x9F\xA6\x80";  // U+0B95, U+1F980: not in the corpus
  auto plain = create("gpt-sentencepiece", model("bpe"));
  const Ids ids = plain->encode(text);
  EXPECT_NE(std::find(ids.begin(), ids.end(), *plain->special_token("unk")), ids.end());
  auto bytes = create("gpt-sentencepiece", model("bytes"));
  EXPECT_EQ(bytes->decode(bytes->encode(text)), text);
  EXPECT_GE(bytes->encode(text).size(), 8u);  // the two characters as 3 + 4 byte pieces
}

TEST(SentencePiecePlugin, DecodeEqualsSpmDecode) {
  SKIP_WITHOUT_SPM_TOOLS();
  for (const char* name : {"bpe", "unigram", "bytes"}) {
    const fs::path m = model(name);
    const auto ids = spm_encode(m);
    const auto expected = spm_decode(m, ids);
    ASSERT_EQ(expected.size(), ids.size());
    auto gpt = create("gpt-sentencepiece", m);
    auto llama2 = create("llama2-sentencepiece", m);
    const int32_t bos = *llama2->special_token("bos");
    for (size_t i = 0; i < ids.size(); ++i) {
      ASSERT_EQ(gpt->decode(ids[i]), expected[i]) << name << " line " << i;
      ASSERT_EQ(llama2->decode(concat({bos}, ids[i])), expected[i]) << name << " line " << i;  // bos decodes to ""
      // The byte-fallback model keeps every character and space: an exact round trip.
      if (std::string(name) == "bytes") ASSERT_EQ(expected[i], corpus()[i]);
    }
  }
}

TEST(SentencePiecePlugin, SpecialTokensOfGptAndLlama2) {
  SKIP_WITHOUT_SPM_TOOLS();
  // spm_train's defaults: unk 0, bos 1, eos 2, no pad.
  for (const char* id : {"gpt-sentencepiece", "llama2-sentencepiece"}) {
    auto tok = create(id, model("bpe"));
    EXPECT_EQ(tok->vocab_size(), pieces_of(model("bpe"))) << id;
    EXPECT_EQ(tok->special_token("unk"), std::optional<int32_t>(0)) << id;
    EXPECT_EQ(tok->special_token("bos"), std::optional<int32_t>(1)) << id;
    EXPECT_EQ(tok->special_token("eos"), std::optional<int32_t>(2)) << id;
    EXPECT_EQ(tok->special_token("eod"), std::optional<int32_t>(2)) << id;  // Megatron: eod = eos
    EXPECT_EQ(tok->special_token("pad"), std::nullopt) << id;              // pad_id -1
    for (const char* none : {"cls", "sep", "mask"}) EXPECT_EQ(tok->special_token(none), std::nullopt) << id;
  }
  auto with_pad = create("gpt-sentencepiece", model("unigram"));
  EXPECT_EQ(with_pad->special_token("pad"), std::optional<int32_t>(3));
  // Control tokens decode to nothing, as sp.decode_ids.
  EXPECT_EQ(with_pad->decode({1, 2, 3}), "");
}

// Megatron's _SentencePieceTokenizer: <CLS> <SEP> <EOD> <MASK>, then pad/bos/eos (<PAD> when
// the model has no pad), each at the next id unless the model has the piece; extra ids after.
TEST(SentencePiecePlugin, MegatronAddedSpecialTokens) {
  SKIP_WITHOUT_SPM_TOOLS();
  const int64_t v = pieces_of(model("bpe"));
  auto tok = create("sentencepiece", model("bpe"));
  EXPECT_EQ(tok->special_token("cls"), std::optional<int32_t>(v));
  EXPECT_EQ(tok->special_token("sep"), std::optional<int32_t>(v + 1));
  EXPECT_EQ(tok->special_token("eod"), std::optional<int32_t>(v + 2));
  EXPECT_EQ(tok->special_token("mask"), std::optional<int32_t>(v + 3));
  EXPECT_EQ(tok->special_token("pad"), std::optional<int32_t>(v + 4));  // "<PAD>", added
  EXPECT_EQ(tok->special_token("bos"), std::optional<int32_t>(1));      // "<s>", the model's
  EXPECT_EQ(tok->special_token("eos"), std::optional<int32_t>(2));      // "</s>"
  EXPECT_EQ(tok->vocab_size(), v + 5);

  const int64_t vu = pieces_of(model("unigram"));
  auto padded = create("sentencepiece", model("unigram"), "vocab_extra_ids = 3\n");
  EXPECT_EQ(padded->special_token("pad"), std::optional<int32_t>(3));  // the model's "<pad>"
  EXPECT_EQ(padded->vocab_size(), vu + 4 + 3);                          // 4 added + <extra_id_0..2>
  EXPECT_EQ(padded->encode("<extra_id_2>"), Ids{static_cast<int32_t>(vu + 6)});

  // Special-token text is split out: the earliest match first, the text between encoded alone.
  auto gpt = create("gpt-sentencepiece", model("bpe"));
  const int32_t eod = static_cast<int32_t>(v + 2), cls = static_cast<int32_t>(v);
  EXPECT_EQ(tok->encode("The jury<EOD>said</s><CLS>"),
            concat(concat(gpt->encode("The jury"), {eod}), concat(gpt->encode("said"), {2, cls})));
  EXPECT_EQ(tok->encode("<PAD>"), Ids{static_cast<int32_t>(v + 4)});
  EXPECT_EQ(tok->encode("<eod>"), gpt->encode("<eod>"));  // case matters
  // decode: each special token as " <TOKEN> " between decoded runs (Megatron's detokenize).
  EXPECT_EQ(tok->decode(concat(concat(gpt->encode("The jury"), {eod}), gpt->encode("said"))),
            gpt->decode(gpt->encode("The jury")) + " <EOD> " + gpt->decode(gpt->encode("said")));
  EXPECT_EQ(tok->decode({1, cls}), " <s>  <CLS> ");
  EXPECT_THROW(create("gpt-sentencepiece", model("bpe"), "vocab_extra_ids = 1\n"), megahost::core::Error);
}

TEST(SentencePiecePlugin, Llama2NeedsABosPiece) {
  SKIP_WITHOUT_SPM_TOOLS();
  const fs::path m = model("nobos");
  const std::string err = create_error("Llama2Tokenizer", "tokenizer_model = '" + m.string() + "'");
  EXPECT_NE(err.find(m.string()), std::string::npos) << err;
  EXPECT_NE(err.find("HINT"), std::string::npos) << err;
  auto gpt = create("GPTSentencePieceTokenizer", m);
  EXPECT_EQ(gpt->special_token("bos"), std::nullopt);
  EXPECT_EQ(gpt->special_token("eod"), gpt->special_token("eos"));
}

TEST(SentencePiecePlugin, MissingOrCorruptModelFile) {
  const fs::path missing = scratch() / "no-such.model";
  std::string err = create_error("sentencepiece", "tokenizer_model = '" + missing.string() + "'");
  EXPECT_NE(err.find(missing.string()), std::string::npos) << err;
  EXPECT_NE(err.find("t.toml"), std::string::npos) << err;  // the recipe line of the key, too
  EXPECT_NE(err.find("HINT"), std::string::npos) << err;

  const fs::path corrupt = scratch() / "corrupt.model";
  std::ofstream(corrupt) << "this is not a protobuf \x01\x02\xff\xfe\n";
  for (const char* id : {"sentencepiece", "gpt-sentencepiece", "llama2-sentencepiece"}) {
    err = create_error(id, "tokenizer_model = '" + corrupt.string() + "'");
    EXPECT_NE(err.find(corrupt.string()), std::string::npos) << err;
    EXPECT_NE(err.find("not a SentencePiece model"), std::string::npos) << err;
  }
  const fs::path empty = scratch() / "empty.model";
  std::ofstream(empty).flush();
  err = create_error("sentencepiece", "tokenizer_model = '" + empty.string() + "'");
  EXPECT_NE(err.find(empty.string()), std::string::npos) << err;

  err = create_error("sentencepiece", "");
  EXPECT_NE(err.find("tokenizer_model"), std::string::npos) << err;  // required key
}

TEST(SentencePiecePlugin, InvalidInputIsAnError) {
  SKIP_WITHOUT_SPM_TOOLS();
  auto tok = create("gpt-sentencepiece", model("bpe"));
  EXPECT_THROW(tok->encode("ok \xFF bad"), megahost::core::Error);
  EXPECT_THROW(tok->encode("\xED\xA0\x80"), megahost::core::Error);  // a UTF-8 encoded surrogate
  EXPECT_THROW(tok->decode({static_cast<int32_t>(tok->vocab_size())}), megahost::core::Error);
  EXPECT_THROW(tok->decode({-1}), megahost::core::Error);
  auto megatron = create("sentencepiece", model("bpe"));
  EXPECT_NO_THROW(megatron->decode({static_cast<int32_t>(megatron->vocab_size() - 1)}));
  EXPECT_THROW(megatron->decode({static_cast<int32_t>(megatron->vocab_size())}), megahost::core::Error);
}

// One instance shared by threads (as preprocess workers share it) gives the single-thread ids.
TEST(SentencePiecePlugin, ThreadSafeEncodeAndDecode) {
  SKIP_WITHOUT_SPM_TOOLS();
  for (const char* id : {"sentencepiece", "gpt-sentencepiece"}) {
    auto tok = create(id, model("unigram"));
    std::vector<Ids> expected;
    std::vector<std::string> texts;
    for (const auto& line : corpus()) {
      expected.push_back(tok->encode(line));
      texts.push_back(tok->decode(expected.back()));
    }
    std::vector<int> mismatches(4, 0);
    std::vector<std::thread> pool;
    for (int t = 0; t < 4; ++t)
      pool.emplace_back([&, t] {
        for (int round = 0; round < 3; ++round)
          for (size_t i = t; i < corpus().size(); i += (round % 2) + 1) {
            mismatches[t] += tok->encode(corpus()[i]) != expected[i];
            mismatches[t] += tok->decode(expected[i]) != texts[i];
          }
      });
    for (auto& th : pool) th.join();
    for (int t = 0; t < 4; ++t) EXPECT_EQ(mismatches[t], 0) << id << " thread " << t;
  }
}

// `megahost preprocess` with Megatron's flags writes spm_encode's ids + eod per document.
TEST(SentencePiecePlugin, PreprocessWritesSpmIdsAndEod) {
  SKIP_WITHOUT_SPM_TOOLS();
  ASSERT_TRUE(fs::exists(kMegahost)) << kMegahost;
  const fs::path m = model("bpe");
  const auto expected = spm_encode(m);
  const int64_t v = pieces_of(m);
  const fs::path jsonl = scratch() / "docs.jsonl";
  {
    std::ofstream out(jsonl);
    for (const auto& line : corpus()) out << nlohmann::json{{"text", line}}.dump() << '\n';
  }
  // Megatron's SentencePieceTokenizer: eod is the added <EOD> (pieces + 2); Llama2Tokenizer:
  // bos first, eod = eos.
  const std::pair<std::string, std::pair<Ids, Ids>> cases[] = {
      {"SentencePieceTokenizer", {{}, {static_cast<int32_t>(v + 2)}}},
      {"Llama2Tokenizer", {{1}, {2}}},
  };
  auto format = registry().create_dataset("mmap-indexed", megahost::core::ConfigSection{});
  for (const auto& [type, around] : cases) {
    const fs::path prefix = scratch() / ("out_" + type);
    const auto [rc, out] = shell(sh_arg(kMegahost) + " preprocess --input " + sh_arg(jsonl) + " --output-prefix " +
                                 sh_arg(prefix) + " --tokenizer-type " + type + " --tokenizer-model " + sh_arg(m) +
                                 " --append-eod --workers 2 2>&1");
    ASSERT_EQ(rc, 0) << out;
    const std::string data = prefix.string() + "_text_document";
    auto reader = format->open_reader(data);
    EXPECT_EQ(reader->dtype(), MH_DTYPE_UINT16) << type;
    ASSERT_EQ(reader->num_documents(), expected.size()) << type;
    ASSERT_EQ(reader->num_sequences(), expected.size()) << type;
    const auto lengths = reader->sequence_lengths();
    for (size_t i = 0; i < expected.size(); ++i) {
      const Ids want = concat(concat(around.first, expected[i]), around.second);
      ASSERT_EQ(static_cast<size_t>(lengths[i]), want.size()) << type << " document " << i;
      std::vector<int64_t> got(want.size());
      reader->read(i, 0, got.size(), got.data());
      ASSERT_EQ(Ids(got.begin(), got.end()), want) << type << " document " << i;
    }
    reader.reset();
    for (const char* ext : {".bin", ".idx"}) fs::remove(data + ext);
  }
}
