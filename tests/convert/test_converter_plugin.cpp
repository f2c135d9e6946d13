// A third party's converter plugin (tests/convert/toy_converter, built from abi/ + sdk/ only and
// loaded from its own folder) is found by id and converts in and out through the unchanged host:
// HF -> megahost -> toy -> megahost -> HF is byte-identical; the CLI resolves it with
// --plugin-path; its errors come back as text with a HINT.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <string>

#include "../common/megahost_cli.h"
#include "hf_test_util.h"
#include "megahost/core/convert/hf.h"
#include "megahost/core/convert/safetensors.h"
#include "megahost/core/plugins.h"

namespace fs = std::filesystem;
using namespace megahost;
using hf_test::expect_identical_tensors;
using hf_test::fixture;
using hf_test::TempDir;

namespace {

const core::PluginRegistry& registry() {  // the build's plugins + the toy's own folder
  static const core::PluginRegistry reg({MEGAHOST_BUILD_PLUGIN_DIR, MEGAHOST_TOY_PLUGIN_DIR});
  return reg;
}

}  // namespace

TEST(ConverterPlugin, ThirdPartyConverterIsFoundByIdAndAlias) {
  const core::PluginInfo& p = registry().find(core::PluginKind::Converter, "com.example.toy");
  EXPECT_EQ(fs::path(p.path).parent_path(), fs::path(MEGAHOST_TOY_PLUGIN_DIR));
  EXPECT_EQ(registry().find(core::PluginKind::Converter, "toy").id, "com.example.toy");
  EXPECT_EQ(registry().find(core::PluginKind::Converter, "llama_mistral").id, "hf");  // Megatron's loader name
  EXPECT_STREQ(core::kind_name(p.kind), "converter");
}

TEST(ConverterPlugin, ToyRoundTripThroughMegahostIsByteIdentical) {
  TempDir mh1("toy-mh1"), toy("toy-folder"), mh2("toy-mh2"), hf("toy-hf");
  core::convert_hf_to_megahost(registry(), fixture("llama").string(), mh1.path().string());
  const std::string out = core::convert_megahost_to_foreign(registry(), "com.example.toy", mh1.path().string(),
                                                            toy.path().string());
  EXPECT_NE(out.find("(toy, "), std::string::npos) << out;
  ASSERT_TRUE(fs::exists(toy.path() / "toy.json"));
  // fc1 went through the core's GATE_UP step into two toy tensors.
  EXPECT_TRUE(fs::exists(toy.path() / "toy_decoder.layers.0.mlp.linear_fc1.weight_gate.bin"));
  core::ConvertOptions opts;
  opts.target_tp = 2;  // the driver slices a third party's tensors like HF's
  core::convert_foreign_to_megahost(registry(), "toy", toy.path().string(), mh2.path().string(), opts);
  EXPECT_TRUE(fs::exists(mh2.path() / "iter_0000000" / "rank_00001"));
  core::convert_megahost_to_hf(registry(), mh2.path().string(), hf.path().string());
  expect_identical_tensors(fixture("llama"), hf.path());
}

TEST(ConverterPlugin, PluginErrorsComeBackAsTextWithAHint) {
  TempDir empty("toy-empty"), out("toy-out");
  try {
    core::convert_foreign_to_megahost(registry(), "toy", empty.path().string(), out.path().string());
    FAIL() << "an empty folder converted";
  } catch (const std::exception& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("converter 'com.example.toy'"), std::string::npos) << msg;
    EXPECT_NE(msg.find((empty.path() / "toy.json").string() + ": missing"), std::string::npos) << msg;
    EXPECT_NE(msg.find("HINT"), std::string::npos) << msg;
  }
  // The toy refuses a GPT-2 shaped model when saving, naming why.
  TempDir gpt2("toy-gpt2"), refused("toy-refused");
  core::convert_hf_to_megahost(registry(), fixture("gpt2").string(), gpt2.path().string());
  try {
    core::convert_megahost_to_foreign(registry(), "toy", gpt2.path().string(), refused.path().string());
    FAIL() << "the toy accepted a GPT-2 model";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("only Llama-style models"), std::string::npos) << e.what();
  }
}

TEST(ConverterPlugin, CliResolvesTheConverterFromPluginPath) {
  TempDir work("toy-cli");
  const std::string mh = (work.path() / "mh").string(), toy = (work.path() / "toy").string();
  std::string out;
  ASSERT_EQ(mhtest::run_megahost("convert --loader hf --saver megahost --load-dir " + fixture("llama").string() +
                                   " --save-dir " + mh + " 2>&1",
                               &out),
            0)
      << out;
  const std::string to_toy = "convert --loader megahost --saver toy --load-dir " + mh + " --save-dir " + toy;
  out.clear();
  EXPECT_NE(mhtest::run_megahost(to_toy + " 2>&1", &out), 0) << "found without --plugin-path:\n" << out;
  EXPECT_NE(out.find("--saver toy is unknown"), std::string::npos) << out;
  out.clear();
  ASSERT_EQ(mhtest::run_megahost(to_toy + " --plugin-path " + MEGAHOST_TOY_PLUGIN_DIR + " 2>&1", &out), 0) << out;
  EXPECT_TRUE(fs::exists(fs::path(toy) / "toy.json")) << out;
}
