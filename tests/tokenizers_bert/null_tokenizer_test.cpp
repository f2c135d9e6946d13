// The "null" tokenizer plugin (Megatron's NullTokenizer) through core's PluginRegistry.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "megahost/core/error.h"
#include "test_util.h"

using namespace bert_test;
using megahost::core::PluginKind;

namespace {

std::unique_ptr<megahost::core::Tokenizer> null_tokenizer(int64_t vocab_size) {
  return registry().create_tokenizer("NullTokenizer", section("vocab_size = " + std::to_string(vocab_size) + "\n"));
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const megahost::core::Error& e) {
    return e.what();
  }
  return "no error";
}

}  // namespace

TEST(NullTokenizer, FoundWithAliasAndSchema) {
  const auto& info = registry().find(PluginKind::Tokenizer, "null");
  EXPECT_EQ(&registry().find(PluginKind::Tokenizer, "NullTokenizer"), &info);
  const auto schema = nlohmann::json::parse(info.config_schema);
  EXPECT_TRUE(schema.at("vocab_size").at("required").get<bool>());
  EXPECT_EQ(schema.at("vocab_size").at("type"), "int");
}

TEST(NullTokenizer, VocabSizeAndEodAsMegatron) {
  // _NullTokenizer(vocab_size=100): ids 0..99, eod = eos = 100, vocab_size 101.
  auto tok = null_tokenizer(100);
  EXPECT_EQ(tok->vocab_size(), 101);
  EXPECT_EQ(tok->special_token("eod"), 100);
  EXPECT_EQ(tok->special_token("eos"), 100);
  EXPECT_EQ(tok->special_token("cls"), std::nullopt);
  EXPECT_EQ(tok->special_token("mask"), std::nullopt);
}

TEST(NullTokenizer, EncodeDecodeRoundTrip) {
  auto tok = null_tokenizer(100);
  const std::vector<int32_t> ids = {0, 5, 17, 99, 100, 5};
  EXPECT_EQ(tok->encode("0 5 17 99 100 5"), ids);
  EXPECT_EQ(tok->decode(ids), "0 5 17 99 100 5");
  EXPECT_EQ(tok->encode(tok->decode(ids)), ids);
  EXPECT_EQ(tok->encode("  3\t4\n+5 007 "), (std::vector<int32_t>{3, 4, 5, 7}));  // any whitespace; as int()
  EXPECT_TRUE(tok->encode("").empty());
  EXPECT_TRUE(tok->encode(" \n ").empty());
  EXPECT_EQ(tok->decode({}), "");
  // Many ids: core::Tokenizer's first buffer is too small, so the second call is exercised.
  std::string text;
  std::vector<int32_t> many;
  for (int i = 0; i < 5000; ++i) {
    many.push_back(i % 101);
    text += std::to_string(i % 101) + " ";
  }
  EXPECT_EQ(tok->encode(text), many);
}

TEST(NullTokenizer, RejectsNonIntegersAndOutOfRangeIds) {
  auto tok = null_tokenizer(100);
  std::string m = error_of([&] { tok->encode("1 two 3"); });
  EXPECT_NE(m.find("'two' (byte 2) is not an integer id"), std::string::npos) << m;
  EXPECT_NE(m.find("HINT"), std::string::npos) << m;
  for (const char* bad : {"1.5", "0x10", "-", "+", "7a", "\xE4\xB8\xAD"})
    EXPECT_NE(error_of([&] { tok->encode(bad); }).find("is not an integer id"), std::string::npos) << bad;
  m = error_of([&] { tok->encode("5 101"); });
  EXPECT_NE(m.find("id 101 (byte 2) is outside [0, 101)"), std::string::npos) << m;
  for (const char* bad : {"-1", "99999999999999999999999", "2147483648"})
    EXPECT_NE(error_of([&] { tok->encode(bad); }).find("is outside [0, 101)"), std::string::npos) << bad;
  EXPECT_THROW(tok->decode({3, 101}), megahost::core::Error);
  EXPECT_THROW(tok->decode({-1}), megahost::core::Error);
}

TEST(NullTokenizer, ConfigErrors) {
  std::string m = error_of([] { registry().create_tokenizer("null", section("")); });
  EXPECT_NE(m.find("vocab_size"), std::string::npos) << m;  // required key
  m = error_of([] { null_tokenizer(0); });
  EXPECT_NE(m.find("vocab_size must be in [1, 2^31 - 2], got 0"), std::string::npos) << m;
  EXPECT_NE(m.find("test-recipe.toml"), std::string::npos) << m;
  EXPECT_NE(error_of([] { registry().create_tokenizer("null", section("vocab_size = 'ten'\n")); }), "no error");
}
