// Both tokenizer plugins loaded the way the host loads them: core's PluginRegistry over the
// default search path (which includes the build tree's plugin folder), create_tokenizer with
// a recipe section, then encode/decode through the C ABI.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "megahost/core/config.h"
#include "megahost/core/error.h"
#include "megahost/core/host_services.h"
#include "megahost/core/plugins.h"

namespace fs = std::filesystem;
using megahost::core::ConfigSection;
using megahost::core::parse_config_section;
using megahost::core::PluginKind;
using megahost::core::PluginRegistry;

namespace {

const fs::path kGpt2Dir = fs::path(MEGAHOST_FETCHED_DATA_DIR) / "npm" / "gpt2" / "package";
const fs::path kGolden = fs::path(MEGAHOST_TEST_DATA_DIR) / "golden" / "gpt2_bpe_ids.jsonl";

const PluginRegistry& registry() {
  static const PluginRegistry reg(PluginRegistry::default_search_path());
  return reg;
}

ConfigSection section(const std::string& toml) { return parse_config_section(toml, "test-recipe.toml", "tokenizer"); }

ConfigSection gpt2_section() {
  return section("vocab_file = '" + (kGpt2Dir / "encoder.json").string() + "'\nmerge_file = '" +
                 (kGpt2Dir / "vocab.bpe").string() + "'\n");
}

bool refused(const std::string& file_name, std::string* why) {
  for (const auto& r : registry().refused())
    if (r.path.filename() == file_name) {
      *why = r.reason;
      return true;
    }
  return false;
}

}  // namespace

TEST(TokenizerPlugins, BothAreFoundWithAliases) {
  std::string why;
  ASSERT_FALSE(refused("libmegahost_tokenizer_gpt2_bpe.so", &why)) << why;
  ASSERT_FALSE(refused("libmegahost_tokenizer_byte_level.so", &why)) << why;
  const auto& gpt2 = registry().find(PluginKind::Tokenizer, "gpt2-bpe");
  EXPECT_EQ(&registry().find(PluginKind::Tokenizer, "GPT2BPETokenizer"), &gpt2);
  EXPECT_EQ(gpt2.abi_version, std::to_string(MH_ABI_VERSION_MAJOR) + "." + std::to_string(MH_ABI_VERSION_MINOR) + ".0");
  const auto schema = nlohmann::json::parse(gpt2.config_schema);
  EXPECT_TRUE(schema.at("vocab_file").at("required").get<bool>());
  EXPECT_EQ(schema.at("merge_file").at("type"), "path");

  const auto& bytes = registry().find(PluginKind::Tokenizer, "byte-level");
  EXPECT_EQ(&registry().find(PluginKind::Tokenizer, "ByteLevelTokenizer"), &bytes);
  EXPECT_EQ(bytes.config_schema, "{}");
}

// ---- the raw C ABI contract, for both plugins ----

// Calls the factory and the instance table directly (no core::Tokenizer in between), to check
// the two-call size protocol, "out-params untouched on error" and the error codes.
struct RawTokenizer {
  const mh_host* host = megahost::core::host_table();
  std::unique_ptr<megahost::core::ConfigTree> tree;
  mh_tokenizer* tok = nullptr;
  const mh_tokenizer_api* api = nullptr;

  RawTokenizer(const std::string& id, ConfigSection cfg) : tree(std::make_unique<megahost::core::ConfigTree>(cfg)) {
    const auto* f = static_cast<const mh_tokenizer_factory*>(registry().find(PluginKind::Tokenizer, id).factory);
    const mh_tokenizer_create_args args{sizeof(mh_tokenizer_create_args), tree->root(), "tokenizer"};
    EXPECT_EQ(code(f->create("no-such-tokenizer", host, &args, &tok, &api)), MH_ERR_NOT_FOUND);
    EXPECT_EQ(tok, nullptr);  // untouched on error
    mh_error* err = f->create(id.c_str(), host, &args, &tok, &api);
    EXPECT_EQ(err, nullptr) << megahost::core::error_message(err);
  }
  ~RawTokenizer() {
    if (api != nullptr) api->destroy(tok);
  }
  // The error's code; frees it.
  mh_status_code code(mh_error* err) const {
    const mh_status_code c = host->error_code(host, err);
    host->error_free(host, err);
    return c;
  }
};

void check_raw_contract(RawTokenizer& raw, const std::string& text) {
  ASSERT_NE(raw.api, nullptr);
  EXPECT_GE(raw.api->hdr.struct_size, sizeof(mh_tokenizer_api));
  EXPECT_EQ(raw.api->hdr.abi.major, static_cast<uint32_t>(MH_ABI_VERSION_MAJOR));
  // Size query with no buffer, then a short buffer (the rest stays untouched), then the full one.
  size_t n = 0;
  ASSERT_EQ(raw.api->encode(raw.tok, text.data(), text.size(), nullptr, 0, &n), nullptr);
  ASSERT_GT(n, 2u);
  std::vector<int32_t> ids(n + 1, -7);
  size_t n2 = 0;
  ASSERT_EQ(raw.api->encode(raw.tok, text.data(), text.size(), ids.data(), 2, &n2), nullptr);
  EXPECT_EQ(n2, n);
  EXPECT_EQ(ids[2], -7);
  ASSERT_EQ(raw.api->encode(raw.tok, text.data(), text.size(), ids.data(), n, &n2), nullptr);
  EXPECT_EQ(ids[n], -7);
  ids.resize(n);
  std::string buf(text.size() + 1, '#');
  size_t bytes = 0;
  ASSERT_EQ(raw.api->decode(raw.tok, ids.data(), n, nullptr, 0, &bytes), nullptr);
  EXPECT_EQ(bytes, text.size());
  ASSERT_EQ(raw.api->decode(raw.tok, ids.data(), n, buf.data(), buf.size(), &bytes), nullptr);
  EXPECT_EQ(buf.substr(0, bytes), text);
  EXPECT_EQ(buf[bytes], '#');
  // Errors: right code, out-params untouched.
  const int32_t bad_id = static_cast<int32_t>(raw.api->vocab_size(raw.tok));
  bytes = 12345;
  EXPECT_EQ(raw.code(raw.api->decode(raw.tok, &bad_id, 1, buf.data(), buf.size(), &bytes)), MH_ERR_INVALID_ARG);
  EXPECT_EQ(bytes, 12345u);
  int32_t special = -1;
  EXPECT_EQ(raw.code(raw.api->special_token(raw.tok, MH_TOKEN_MASK, &special)), MH_ERR_NOT_FOUND);
  EXPECT_EQ(special, -1);
  EXPECT_EQ(raw.code(raw.api->encode(raw.tok, text.data(), text.size(), nullptr, 0, nullptr)), MH_ERR_INVALID_ARG);
  EXPECT_EQ(raw.api->get_extension(raw.tok, "mh.tokenizer.offsets/1"), nullptr);
}

TEST(TokenizerPlugins, ByteLevelRawAbiContract) {
  RawTokenizer raw("byte-level", section(""));
  check_raw_contract(raw, "bytes \xF0\x9F\x98\x80 and \xFF invalid UTF-8");
}

TEST(TokenizerPlugins, Gpt2BpeRawAbiContract) {
  if (!fs::exists(kGpt2Dir / "encoder.json")) GTEST_SKIP() << "GPT-2 files not fetched: " << kGpt2Dir;
  RawTokenizer raw("gpt2-bpe", gpt2_section());
  check_raw_contract(raw, "Hello world, caf\xC3\xA9 \xFF invalid UTF-8 round-trips too");
}

// ---- byte-level (the C plugin) ----

TEST(ByteLevelPlugin, EncodesBytesAndEod) {
  auto tok = registry().create_tokenizer("byte-level", section(""));
  EXPECT_EQ(tok->vocab_size(), 257);
  EXPECT_EQ(tok->special_token("eod"), std::optional<int32_t>(256));
  EXPECT_EQ(tok->special_token("eos"), std::optional<int32_t>(256));
  EXPECT_EQ(tok->special_token("mask"), std::nullopt);
  const std::string text = "h\xC3\xA9llo\n\xF0\x9F\x98\x80";  // "héllo\n😀"
  const auto ids = tok->encode(text);
  ASSERT_EQ(ids.size(), text.size());
  for (size_t i = 0; i < text.size(); ++i) EXPECT_EQ(ids[i], static_cast<unsigned char>(text[i]));
  EXPECT_EQ(tok->decode(ids), text);
  auto with_eod = ids;
  with_eod.push_back(256);
  EXPECT_EQ(tok->decode(with_eod), text);  // eod decodes to no bytes
  EXPECT_TRUE(tok->encode("").empty());
}

TEST(ByteLevelPlugin, LongTextNeedsTheSecondCall) {
  // core::Tokenizer first offers a buffer of about len/2 ids: a byte tokenizer needs len, so
  // this exercises the two-call size protocol of the C plugin.
  auto tok = registry().create_tokenizer("ByteLevelTokenizer", section(""));
  std::string text(10000, 'x');
  for (size_t i = 0; i < text.size(); ++i) text[i] = static_cast<char>(i * 7 + 1);
  const auto ids = tok->encode(text);
  ASSERT_EQ(ids.size(), text.size());
  EXPECT_EQ(tok->decode(ids), text);
}

TEST(ByteLevelPlugin, RejectsBadIdsAndUnknownKeys) {
  auto tok = registry().create_tokenizer("byte-level", section(""));
  try {
    tok->decode({65, 257});
    FAIL() << "decoded id 257";
  } catch (const megahost::core::Error& e) {
    EXPECT_NE(std::string(e.what()).find("outside 0..256"), std::string::npos) << e.what();
  }
  EXPECT_THROW(tok->decode({-3}), megahost::core::Error);
  // The schema is "{}": any key is unknown.
  EXPECT_THROW(registry().create_tokenizer("byte-level", section("vocab_file = 'x'\n")), megahost::core::Error);
}

// ---- gpt2-bpe ----

class Gpt2BpePlugin : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(kGpt2Dir / "encoder.json") || !fs::exists(kGpt2Dir / "vocab.bpe"))
      GTEST_SKIP() << "GPT-2 files not fetched: " << kGpt2Dir << " (scripts/fetch_data.sh)";
  }
};

TEST_F(Gpt2BpePlugin, GoldenIdsThroughTheAbi) {
  auto tok = registry().create_tokenizer("GPT2BPETokenizer", gpt2_section());
  EXPECT_EQ(tok->id(), "gpt2-bpe");
  EXPECT_EQ(tok->vocab_size(), 50257);
  EXPECT_EQ(tok->special_token("eod"), std::optional<int32_t>(50256));
  EXPECT_EQ(tok->special_token("bos"), std::optional<int32_t>(50256));
  EXPECT_EQ(tok->special_token("pad"), std::nullopt);
  std::ifstream f(kGolden);
  std::string line;
  size_t n = 0;
  while (std::getline(f, line)) {
    const auto j = nlohmann::json::parse(line);
    const std::string text = j.at("text");
    const auto ids = tok->encode(text);
    EXPECT_EQ(ids, j.at("ids").get<std::vector<int32_t>>()) << "golden line " << n + 1;
    EXPECT_EQ(tok->decode(ids), text);
    ++n;
  }
  EXPECT_EQ(n, 205u);
}

TEST_F(Gpt2BpePlugin, RoundTripAgreesWithByteLevel) {
  // Sanity check across the two plugins: decoding either's ids gives the same text back.
  auto gpt2 = registry().create_tokenizer("gpt2-bpe", gpt2_section());
  auto bytes = registry().create_tokenizer("byte-level", section(""));
  const std::string text = "Mixed text: caf\xC3\xA9, \xE6\x97\xA5\xE6\x9C\xAC, 42!\n";
  EXPECT_EQ(gpt2->decode(gpt2->encode(text)), bytes->decode(bytes->encode(text)));
  EXPECT_LT(gpt2->encode(text).size(), bytes->encode(text).size());
}

TEST_F(Gpt2BpePlugin, MissingVocabFileNamesKeyAndFile) {
  const std::string missing = "/nonexistent/megahost/encoder.json";
  try {
    registry().create_tokenizer(
        "gpt2-bpe", section("vocab_file = '" + missing + "'\nmerge_file = '" + (kGpt2Dir / "vocab.bpe").string() + "'\n"));
    FAIL() << "created with a missing vocab_file";
  } catch (const megahost::core::Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(missing), std::string::npos) << msg;
    EXPECT_NE(msg.find("vocab_file"), std::string::npos) << msg;
    EXPECT_NE(msg.find("HINT"), std::string::npos) << msg;
  }
}

TEST_F(Gpt2BpePlugin, MissingRequiredKeyIsRejected) {
  EXPECT_THROW(registry().create_tokenizer("gpt2-bpe", section("vocab_file = 'a.json'\n")), megahost::core::Error);
}
