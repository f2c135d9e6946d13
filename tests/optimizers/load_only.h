// Test helper: a plugin registry that holds only the libraries under test, so a test does not
// depend on (or load) the other plugins of the build tree.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "megahost/core/plugins.h"

namespace megahost::test {

inline std::unique_ptr<core::PluginRegistry> load_only(const std::vector<std::string>& library_files) {
  namespace fs = std::filesystem;
  std::string tag;
  for (const auto& f : library_files) tag += "-" + fs::path(f).stem().string();
  const fs::path dir = fs::temp_directory_path() / ("mh-test-plugins-" + std::to_string(::getpid()) + tag);
  fs::create_directories(dir);
  for (const auto& f : library_files) fs::create_symlink(fs::absolute(f), dir / fs::path(f).filename());
  auto registry = std::make_unique<core::PluginRegistry>(std::vector<fs::path>{dir});
  fs::remove_all(dir);  // the libraries stay loaded for the whole process
  return registry;
}

}  // namespace megahost::test
