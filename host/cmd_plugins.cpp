// megahost plugins [--json]: every plugin found, and every library refused with the reason.
#include <cstdio>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "common.h"

namespace megahost::host {

int cmd_plugins(int argc, char** argv) {
  cxxopts::Options options("megahost plugins", "List plugins found in the search path and libraries refused.");
  options.add_options()("json", "machine-readable output")(
      "plugin-path", "extra plugin folder (repeatable)", cxxopts::value<std::vector<std::string>>())(
      "h,help", "show this help");
  cxxopts::ParseResult args;
  int code = 0;
  if (!parse_flags(options, argc, argv, args, code)) return code;
  return guarded("plugins", [&] {
    std::vector<std::string> extra;
    if (args.count("plugin-path") != 0) extra = args["plugin-path"].as<std::vector<std::string>>();
    const auto dirs = search_path(extra);
    core::PluginRegistry reg(dirs);
    if (args.count("json") != 0) {
      nlohmann::json out;
      out["search_path"] = nlohmann::json::array();
      for (const auto& d : dirs) out["search_path"].push_back(d.string());
      out["plugins"] = nlohmann::json::array();
      for (const auto& p : reg.plugins()) {
        nlohmann::json schema = nlohmann::json::object();
        if (!p.config_schema.empty()) schema = nlohmann::json::parse(p.config_schema, nullptr, false);
        out["plugins"].push_back({{"id", p.id},
                                  {"kind", core::kind_name(p.kind)},
                                  {"name", p.name},
                                  {"vendor", p.vendor},
                                  {"version", p.version},
                                  {"abi_version", p.abi_version},
                                  {"aliases", p.aliases},
                                  {"description", p.description},
                                  {"path", p.path.string()},
                                  {"config_schema", schema}});
      }
      out["refused"] = nlohmann::json::array();
      for (const auto& r : reg.refused()) out["refused"].push_back({{"path", r.path.string()}, {"reason", r.reason}});
      std::printf("%s\n", out.dump(2).c_str());
      return kExitOk;
    }
    std::printf("%-11s %-20s %-8s %-5s %s\n", "KIND", "ID", "VERSION", "ABI", "PATH");
    for (const auto& p : reg.plugins())
      std::printf("%-11s %-20s %-8s %-5s %s\n", core::kind_name(p.kind), p.id.c_str(), p.version.c_str(),
                  p.abi_version.c_str(), p.path.string().c_str());
    if (!reg.refused().empty()) {
      std::printf("\nrefused:\n");
      for (const auto& r : reg.refused()) std::printf("  %s\n    %s\n", r.path.string().c_str(), r.reason.c_str());
    }
    std::printf("\nsearch path:");
    for (const auto& d : dirs) std::printf(" %s", d.string().c_str());
    std::printf("\n");
    return kExitOk;
  });
}

}  // namespace megahost::host
