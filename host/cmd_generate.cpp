// megahost generate RECIPE --prompt TEXT [--max-new-tokens N]
#include <cstdio>

#include "commands.h"
#include "common.h"
#include "megahost/core/engine/trainer.h"
#include "megahost/core/recipe.h"

namespace megahost::host {

int cmd_generate(int argc, char** argv) {
  cxxopts::Options options("megahost generate",
                           "Greedy continuation of a prompt by the model of RECIPE, from its latest checkpoint.");
  options.positional_help("RECIPE");
  options.add_options()("recipe", "TOML recipe", cxxopts::value<std::string>())(
      "p,prompt", "text to continue", cxxopts::value<std::string>())(
      "n,max-new-tokens", "tokens to generate", cxxopts::value<int64_t>()->default_value("32"))(
      "s,set", "override a recipe key: section.key=value (repeatable)", cxxopts::value<std::vector<std::string>>())(
      "plugin-path", "extra plugin folder (repeatable)", cxxopts::value<std::vector<std::string>>())(
      "h,help", "show this help");
  options.parse_positional({"recipe"});
  cxxopts::ParseResult args;
  int code = 0;
  if (!parse_flags(options, argc, argv, args, code)) return code;
  return guarded("generate", [&] {
    if (args.count("recipe") == 0 || args.count("prompt") == 0) {
      std::fprintf(stderr, "megahost generate: RECIPE and --prompt are required\n\n%s", options.help().c_str());
      return kExitUsage;
    }
    std::vector<std::string> overrides;
    if (args.count("set") != 0) overrides = args["set"].as<std::vector<std::string>>();
    core::Recipe recipe = core::load_recipe(args["recipe"].as<std::string>(), overrides);
    std::vector<std::string> extra = recipe.plugin_path;
    if (args.count("plugin-path") != 0)
      for (const auto& p : args["plugin-path"].as<std::vector<std::string>>()) extra.push_back(p);
    core::PluginRegistry registry(search_path(extra));
    const std::string prompt = args["prompt"].as<std::string>();
    const std::string text = core::generate(recipe, registry, prompt, args["max-new-tokens"].as<int64_t>());
    std::printf("%s%s\n", prompt.c_str(), text.c_str());
    return kExitOk;
  });
}

}  // namespace megahost::host
