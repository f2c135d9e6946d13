#include "common.h"

#include <spdlog/spdlog.h>

#include <cstdio>

#include "commands.h"

namespace megahost::host {

int guarded(const char* command, const std::function<int()>& body) {
  try {
    return body();
  } catch (const cxxopts::exceptions::exception& e) {
    std::fprintf(stderr, "megahost %s: %s\nHINT: megahost %s --help\n", command, e.what(), command);
    return kExitUsage;
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "megahost %s: error: %s\n", command, e.what());
    return kExitError;
  }
}

bool parse_flags(cxxopts::Options& options, int argc, char** argv, cxxopts::ParseResult& out, int& exit_code) {
  try {
    out = options.parse(argc, argv);
  } catch (const cxxopts::exceptions::exception& e) {
    std::fprintf(stderr, "%s: %s\n\n%s", options.program().c_str(), e.what(), options.help().c_str());
    exit_code = kExitUsage;
    return false;
  }
  if (out.count("help") != 0) {
    std::fputs(options.help().c_str(), stdout);
    exit_code = kExitOk;
    return false;
  }
  return true;
}

std::vector<std::filesystem::path> search_path(const std::vector<std::string>& extra) {
  std::vector<std::filesystem::path> dirs(extra.begin(), extra.end());
  return core::PluginRegistry::default_search_path(dirs);
}

}  // namespace megahost::host
