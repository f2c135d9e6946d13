// megahost generate RECIPE --prompt TEXT [--max-new-tokens N]
#include <cstdio>

#include "commands.h"
#include "common.h"
#include "megahost/core/engine/trainer.h"

namespace megahost::host {

int cmd_generate(int argc, char** argv) {
  cxxopts::Options options("megahost generate",
                           "Greedy continuation of a prompt by the model of RECIPE, from its latest checkpoint.");
  add_recipe_options(options);
  options.add_options()("p,prompt", "text to continue", cxxopts::value<std::string>())(
      "n,max-new-tokens", "tokens to generate", cxxopts::value<int64_t>()->default_value("32"));
  cxxopts::ParseResult args;
  int code = 0;
  if (!parse_flags(options, argc, argv, args, code)) return code;
  return guarded("generate", [&] {
    if (args.count("recipe") == 0 || args.count("prompt") == 0) {
      std::fprintf(stderr, "megahost generate: RECIPE and --prompt are required\n\n%s", options.help().c_str());
      return kExitUsage;
    }
    RecipeAndPlugins loaded = load_recipe_and_plugins(args);
    const std::string prompt = args["prompt"].as<std::string>();
    const std::string text =
        core::generate(loaded.recipe, *loaded.registry, prompt, args["max-new-tokens"].as<int64_t>());
    std::printf("%s%s\n", prompt.c_str(), text.c_str());
    return kExitOk;
  });
}

}  // namespace megahost::host
