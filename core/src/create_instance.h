// Private to core: the one path every plugin instance is created through — schema check (defaults
// filled in place), config tree, the factory's create(), and the typed handle that owns both.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "megahost/core/error.h"
#include "megahost/core/host_services.h"
#include "megahost/core/plugins.h"

namespace megahost::core {

// Args: one of the mh_*_create_args structs (struct_size, config, instance_name first); its other
// fields are set by the caller. Handle(instance, api, id, config_tree) takes ownership.
template <typename Handle, typename Factory, typename Instance, typename Api, typename Args>
std::unique_ptr<Handle> create_instance(const PluginInfo& p, const ConfigSection& section,
                                        const std::vector<std::string>& host_keys, Args args, const char* what) {
  ConfigSection cfg = section;  // shares the table: defaults are filled in place (copies lose file:line)
  apply_config_schema(p, cfg, host_keys);
  auto tree = std::make_shared<ConfigTree>(cfg);
  args.struct_size = sizeof(Args);
  args.config = tree->root();
  args.instance_name = section.name.c_str();
  Instance* instance = nullptr;
  const Api* api = nullptr;
  const auto* factory = static_cast<const Factory*>(p.factory);
  throw_if_error(factory->create(p.id.c_str(), host_table(), &args, &instance, &api), cat(what, " '", p.id, "'"));
  return std::make_unique<Handle>(instance, api, p.id, tree);
}

}  // namespace megahost::core
