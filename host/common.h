// Shared helpers of the subcommands: error reporting and the plugin search path.
#pragma once

#include <cxxopts.hpp>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "megahost/core/plugins.h"
#include "megahost/core/recipe.h"

namespace megahost::host {

// Runs a subcommand body: prints "error: ..." for any exception and maps it to an exit code.
int guarded(const char* command, const std::function<int()>& body);

// Parses flags; on --help prints help and returns false with code 0; on a flag error prints
// the message and help and returns false with code 2.
bool parse_flags(cxxopts::Options& options, int argc, char** argv, cxxopts::ParseResult& out, int& exit_code);

std::vector<std::filesystem::path> search_path(const std::vector<std::string>& extra);

// Options shared by commands that take a recipe: RECIPE, --set, --plugin-path, --help.
void add_recipe_options(cxxopts::Options& options);

// The recipe with its --set overrides, and the plugins of its search path (recipe plugin_path
// and --plugin-path added). Refused libraries are logged as warnings.
struct RecipeAndPlugins {
  core::Recipe recipe;
  std::unique_ptr<core::PluginRegistry> registry;
};
// `forced` overrides go after the user's --set ones (they win): e.g. what `megahost bench` fixes.
RecipeAndPlugins load_recipe_and_plugins(const cxxopts::ParseResult& args, const std::vector<std::string>& forced = {});

}  // namespace megahost::host
