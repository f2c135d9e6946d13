// megahost run RECIPE [--set section.key=value]...
#include <spdlog/spdlog.h>

#include "commands.h"
#include "common.h"
#include "megahost/core/engine/trainer.h"
#include "megahost/core/recipe.h"

namespace megahost::host {

namespace {

void set_log_level(const std::string& level) {
  const auto l = spdlog::level::from_str(level);
  spdlog::set_level(l == spdlog::level::off && level != "off" ? spdlog::level::info : l);
}

}  // namespace

int cmd_run(int argc, char** argv) {
  cxxopts::Options options("megahost run", "Train as the recipe says; resumes from [checkpoint] load.");
  options.positional_help("RECIPE");
  options.add_options()("recipe", "TOML recipe", cxxopts::value<std::string>())(
      "s,set", "override a recipe key: section.key=value (repeatable)", cxxopts::value<std::vector<std::string>>())(
      "plugin-path", "extra plugin folder (repeatable)", cxxopts::value<std::vector<std::string>>())(
      "h,help", "show this help");
  options.parse_positional({"recipe"});
  cxxopts::ParseResult args;
  int code = 0;
  if (!parse_flags(options, argc, argv, args, code)) return code;
  return guarded("run", [&] {
    if (args.count("recipe") == 0) {
      std::fprintf(stderr, "megahost run: missing RECIPE\n\n%s", options.help().c_str());
      return kExitUsage;
    }
    std::vector<std::string> overrides;
    if (args.count("set") != 0) overrides = args["set"].as<std::vector<std::string>>();
    core::Recipe recipe = core::load_recipe(args["recipe"].as<std::string>(), overrides);
    set_log_level(recipe.get_string("logging", "log_level"));
    std::vector<std::string> extra = recipe.plugin_path;
    if (args.count("plugin-path") != 0)
      for (const auto& p : args["plugin-path"].as<std::vector<std::string>>()) extra.push_back(p);
    core::PluginRegistry registry(search_path(extra));
    for (const auto& refused : registry.refused())
      spdlog::warn("plugin library refused: {}: {}", refused.path.string(), refused.reason);
    core::TrainSummary s = core::train(recipe, registry);
    if (s.first_valid_loss && s.last_valid_loss)
      spdlog::info("validation loss: {:.4f} (first evaluation) -> {:.4f} (last)", *s.first_valid_loss,
                   *s.last_valid_loss);
    spdlog::info("done at iteration {} (started at {})", s.last_iteration, s.start_iteration);
    return kExitOk;
  });
}

}  // namespace megahost::host
