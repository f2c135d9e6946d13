// A fresh folder per test under one folder per test run, removed at the end of the run.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

namespace data_cache_test {

namespace fs = std::filesystem;

// Without std::filesystem::remove_all (broken in the PyTorch wheel's libtorch.so).
inline void remove_tree(const fs::path& p) {
  std::error_code ec;
  if (fs::is_directory(fs::symlink_status(p, ec)))
    for (const auto& e : fs::directory_iterator(p, ec)) remove_tree(e.path());
  fs::remove(p, ec);
}

inline const fs::path& run_dir() {
  static const fs::path dir = fs::temp_directory_path() / ("mh_data_cache_test_" + std::to_string(::getpid()));
  return dir;
}

inline fs::path scratch() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  const fs::path dir = run_dir() / (std::string(info->test_suite_name()) + "." + info->name());
  remove_tree(dir);
  fs::create_directories(dir);
  return dir;
}

inline std::string read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

inline void write_bytes(const fs::path& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << bytes;
}

}  // namespace data_cache_test
