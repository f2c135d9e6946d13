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

void add_recipe_options(cxxopts::Options& options) {
  options.positional_help("RECIPE");
  options.add_options()("recipe", "TOML recipe", cxxopts::value<std::string>())(
      "s,set", "override a recipe key: section.key=value (repeatable)", cxxopts::value<std::vector<std::string>>())(
      "plugin-path", "extra plugin folder (repeatable)", cxxopts::value<std::vector<std::string>>())(
      "h,help", "show this help");
  options.parse_positional({"recipe"});
}

RecipeAndPlugins load_recipe_and_plugins(const cxxopts::ParseResult& args, const std::vector<std::string>& forced) {
  std::vector<std::string> overrides;
  if (args.count("set") != 0) overrides = args["set"].as<std::vector<std::string>>();
  overrides.insert(overrides.end(), forced.begin(), forced.end());
  RecipeAndPlugins out{core::load_recipe(args["recipe"].as<std::string>(), overrides), nullptr};
  std::vector<std::string> extra = out.recipe.plugin_path;
  if (args.count("plugin-path") != 0)
    for (const auto& p : args["plugin-path"].as<std::vector<std::string>>()) extra.push_back(p);
  out.registry = std::make_unique<core::PluginRegistry>(search_path(extra));
  for (const auto& refused : out.registry->refused())
    spdlog::warn("plugin library refused: {}: {}", refused.path.string(), refused.reason);
  return out;
}

}  // namespace megahost::host
