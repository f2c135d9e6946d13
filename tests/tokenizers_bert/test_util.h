// Shared helpers of the tokenizers_bert tests.
#pragma once

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "megahost/core/config.h"
#include "megahost/core/plugins.h"

namespace bert_test {

namespace fs = std::filesystem;

inline const fs::path kGoldenDir = fs::path(MEGAHOST_TEST_DATA_DIR) / "golden";
inline const fs::path kUncasedVocab = kGoldenDir / "bert_wordpiece_uncased_vocab.txt";
inline const fs::path kCasedVocab = kGoldenDir / "bert_wordpiece_cased_vocab.txt";

// Only the build tree's plugins, whatever is installed on the machine.
inline const megahost::core::PluginRegistry& registry() {
  static const megahost::core::PluginRegistry reg({MEGAHOST_BUILD_PLUGIN_DIR});
  return reg;
}

inline megahost::core::ConfigSection section(const std::string& toml) {
  return megahost::core::parse_config_section(toml, "test-recipe.toml", "tokenizer");
}

inline megahost::core::ConfigSection vocab_section(const fs::path& vocab) {
  return section("vocab_file = '" + vocab.string() + "'\n");
}

struct GoldenLine {
  std::string text;
  std::vector<int32_t> ids;
};

inline std::vector<GoldenLine> read_golden(const fs::path& file) {
  std::vector<GoldenLine> out;
  std::ifstream in(file);
  for (std::string line; std::getline(in, line);) {
    const auto j = nlohmann::json::parse(line);
    out.push_back({j.at("text").get<std::string>(), j.at("ids").get<std::vector<int32_t>>()});
  }
  return out;
}

// A fresh, flat temporary folder per test, removed file by file at the end (no
// fs::remove_all: it is broken in some libtorch builds this binary may load).
class TempDir {
 public:
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = fs::temp_directory_path() / (std::string("megahost_bert_") + info->test_suite_name() + "_" +
                                         info->name() + "_" + std::to_string(::getpid()));
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(path_, ec)) files.push_back(e.path());
    for (const auto& f : files) fs::remove(f, ec);
    fs::remove(path_, ec);
  }
  fs::path operator/(const std::string& name) const { return path_ / name; }

 private:
  fs::path path_;
};

inline fs::path write_file(const fs::path& p, const std::string& content) {
  std::ofstream(p, std::ios::binary) << content;
  return p;
}

}  // namespace bert_test
