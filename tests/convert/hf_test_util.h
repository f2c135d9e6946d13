// What the conversion tests share: a scratch folder, the HF fixtures of tests/data/hf
// (tests/convert/make_hf_fixtures.py), and the byte-for-byte comparison of two safetensors folders.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <ATen/ATen.h>

#include <cstring>
#include <filesystem>
#include <string>

#include "megahost/core/convert/safetensors.h"

namespace hf_test {

namespace fs = std::filesystem;

class TempDir {
 public:
  explicit TempDir(const std::string& tag)
      : path_(fs::temp_directory_path() / ("mh-convert-" + tag + "-" + std::to_string(::getpid()))) {
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

inline fs::path fixture(const std::string& name) { return fs::path(MEGAHOST_SOURCE_DIR) / "tests/data/hf" / name; }

// Same tensor names, dtypes, shapes and bytes.
inline void expect_identical_tensors(const fs::path& a_dir, const fs::path& b_dir) {
  const megahost::core::SafetensorsFolder a(a_dir.string()), b(b_dir.string());
  ASSERT_EQ(a.entries().size(), b.entries().size());
  for (const auto& [name, e] : a.entries()) {
    ASSERT_TRUE(b.has(name)) << name;
    EXPECT_EQ(e.dtype_name, b.entry(name).dtype_name) << name;
    EXPECT_EQ(e.shape, b.entry(name).shape) << name;
    const at::Tensor x = a.read(name), y = b.read(name);
    EXPECT_EQ(std::memcmp(x.data_ptr(), y.data_ptr(), e.nbytes), 0) << name << " differs";
  }
}

}  // namespace hf_test
