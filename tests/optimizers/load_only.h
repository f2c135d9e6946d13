// Test helper: a plugin folder holding only the library under test (a symlink), so the test
// does not depend on other plugins of the build tree.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <string>

namespace megahost::test {

inline std::filesystem::path plugin_dir_with(const std::string& library_file) {
  namespace fs = std::filesystem;
  const fs::path lib(library_file);
  const fs::path dir = fs::temp_directory_path() / ("mh-test-plugins-" + std::to_string(::getpid()) + "-" +
                                                    lib.stem().string());
  fs::create_directories(dir);
  const fs::path link = dir / lib.filename();
  std::error_code ec;
  fs::remove(link, ec);
  fs::create_symlink(fs::absolute(lib), link);
  return dir;
}

}  // namespace megahost::test
