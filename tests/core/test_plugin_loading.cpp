// Plugin discovery: real plugins of all five kinds load; broken libraries are refused with reasons.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "megahost/core/error.h"
#include "megahost/core/plugins.h"
#include "megahost/core/schema.h"

#include "megahost/mh_version.h"

// The version every in-tree plugin reports: the headers it was built against.
static const std::string kAbiVersion = std::to_string(MH_ABI_VERSION_MAJOR) + "." +
                                       std::to_string(MH_ABI_VERSION_MINOR) + "." + std::to_string(MH_ABI_VERSION_PATCH);

namespace fs = std::filesystem;
using namespace megahost::core;

TEST(PluginLoading, FindsEveryKindInTheBuildTree) {
  PluginRegistry reg({MEGAHOST_BUILD_PLUGIN_DIR});
  for (auto [kind, id] : std::vector<std::pair<PluginKind, const char*>>{{PluginKind::Model, "gpt"},
                                                                          {PluginKind::Tokenizer, "gpt2-bpe"},
                                                                          {PluginKind::Tokenizer, "byte-level"},
                                                                          {PluginKind::Dataset, "mmap-indexed"},
                                                                          {PluginKind::Optimizer, "adamw"},
                                                                          {PluginKind::Optimizer, "sgd"},
                                                                          {PluginKind::Checkpoint, "megahost-tensors"}}) {
    const PluginInfo& p = reg.find(kind, id);
    EXPECT_EQ(p.abi_version, kAbiVersion);  // every in-tree plugin is built against the current headers
    EXPECT_TRUE(fs::exists(p.path));
  }
  // Megatron's names are aliases.
  EXPECT_EQ(reg.find(PluginKind::Tokenizer, "GPT2BPETokenizer").id, "gpt2-bpe");
  EXPECT_TRUE(reg.refused().empty());
}

TEST(PluginLoading, RefusesWrongAbiMajorAndFingerprintWithReasons) {
  PluginRegistry reg({MEGAHOST_BAD_PLUGIN_DIR});
  ASSERT_EQ(reg.refused().size(), 2u);
  bool saw_major = false, saw_fingerprint = false;
  for (const auto& r : reg.refused()) {
    if (r.reason.find("wrong ABI major") != std::string::npos) saw_major = true;
    if (r.reason.find("fingerprint mismatch") != std::string::npos &&
        r.reason.find("0.0.0") != std::string::npos)
      saw_fingerprint = true;
  }
  EXPECT_TRUE(saw_major);
  EXPECT_TRUE(saw_fingerprint);
  EXPECT_TRUE(reg.plugins().empty());
}

TEST(PluginLoading, RefusesALibraryWithoutTheEntrySymbol) {
  const fs::path dir = fs::temp_directory_path() / "megahost_test_not_a_plugin";
  fs::create_directories(dir);
  // Any shared library that is not a plugin: libgtest's siblings are not guaranteed, so use libc's.
  const fs::path lib = dir / "libnot_a_plugin.so";
  fs::copy_file("/lib/x86_64-linux-gnu/libm.so.6", lib, fs::copy_options::overwrite_existing);
  PluginRegistry reg({dir});
  ASSERT_EQ(reg.refused().size(), 1u);
  EXPECT_NE(reg.refused()[0].reason.find("missing symbol megahost_plugin_v1"), std::string::npos);
  // A file that is not a library at all.
  { std::ofstream(dir / "libgarbage.so") << "not an ELF file"; }
  PluginRegistry reg2({dir});
  EXPECT_EQ(reg2.refused().size(), 2u);
  fs::remove_all(dir);
}

TEST(PluginLoading, UnknownIdListsTheKnownOnes) {
  PluginRegistry reg({MEGAHOST_BUILD_PLUGIN_DIR});
  try {
    reg.find(PluginKind::Tokenizer, "gpt3-bpe");
    FAIL();
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("no tokenizer plugin 'gpt3-bpe'"), std::string::npos) << m;
    EXPECT_NE(m.find("gpt2-bpe"), std::string::npos) << m;
    EXPECT_NE(m.find("HINT"), std::string::npos) << m;
  }
}

TEST(PluginLoading, PluginKeysAreCheckedAgainstTheSchemaWithFileAndLine) {
  PluginRegistry reg({MEGAHOST_BUILD_PLUGIN_DIR});
  ConfigSection s = parse_config_section("vocab_file = 'a'\nmerge_file = 'b'\nvocab_fil = 'c'\n", "r.toml", "tokenizer");
  try {
    apply_config_schema(reg.find(PluginKind::Tokenizer, "gpt2-bpe"), s, {});
    FAIL();
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("r.toml:3"), std::string::npos) << m;
    EXPECT_NE(m.find("unknown key 'tokenizer.vocab_fil'"), std::string::npos) << m;
    EXPECT_NE(m.find("did you mean 'tokenizer.vocab_file'"), std::string::npos) << m;
  }
  ConfigSection model = parse_config_section("num_layers = 'two'\n", "m.toml", "model");
  try {
    apply_config_schema(reg.find(PluginKind::Model, "gpt"), model, {});
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("m.toml:1"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("must be an integer"), std::string::npos) << e.what();
  }
}

TEST(PluginLoading, CreatingATokenizerWithAMissingFileNamesIt) {
  PluginRegistry reg({MEGAHOST_BUILD_PLUGIN_DIR});
  ConfigSection s = parse_config_section("vocab_file = '/nope/encoder.json'\nmerge_file = '/nope/vocab.bpe'\n",
                                         "r.toml", "tokenizer");
  try {
    reg.create_tokenizer("gpt2-bpe", s);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nope/encoder.json"), std::string::npos) << e.what();
  }
}
