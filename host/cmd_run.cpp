// megahost run RECIPE [--set section.key=value]...
#include <spdlog/spdlog.h>

#include "commands.h"
#include "common.h"
#include "megahost/core/engine/trainer.h"

namespace megahost::host {

int cmd_run(int argc, char** argv) {
  cxxopts::Options options("megahost run", "Train as the recipe says; resumes from [checkpoint] load.");
  add_recipe_options(options);
  cxxopts::ParseResult args;
  int code = 0;
  if (!parse_flags(options, argc, argv, args, code)) return code;
  return guarded("run", [&] {
    if (args.count("recipe") == 0) {
      std::fprintf(stderr, "megahost run: missing RECIPE\n\n%s", options.help().c_str());
      return kExitUsage;
    }
    RecipeAndPlugins loaded = load_recipe_and_plugins(args);
    const std::string level = loaded.recipe.get_string("logging", "log_level");
    spdlog::set_level(spdlog::level::from_str(level));
    core::TrainSummary s = core::train(loaded.recipe, *loaded.registry);
    if (s.first_valid_loss && s.last_valid_loss)
      spdlog::info("validation loss: {:.4f} (first evaluation) -> {:.4f} (last)", *s.first_valid_loss,
                   *s.last_valid_loss);
    spdlog::info("done at iteration {} (started at {})", s.last_iteration, s.start_iteration);
    return kExitOk;
  });
}

}  // namespace megahost::host
