// megahost core — recipes: one TOML file, one table per component, Megatron's argument names.
//
// load_recipe parses the file, applies --set overrides and checks every host-owned key (unknown
// keys, wrong types, impossible combinations) before any heavy work. Plugin-owned keys are
// checked against each plugin's schema when the plugin is created (also before training).
#pragma once

#include <map>
#include <string>
#include <vector>

#include "megahost/core/config.h"
#include "megahost/core/schema.h"

namespace megahost::core {

struct Recipe {
  std::string path;                              // as given
  std::map<std::string, ConfigSection> sections; // every known section, present or defaulted
  std::vector<std::string> plugin_path;          // extra plugin folders

  ConfigSection& section(const std::string& name) { return sections.at(name); }
  const ConfigSection& section(const std::string& name) const { return sections.at(name); }
  // Typed reads of host-owned keys (validated and defaulted by load_recipe).
  int64_t get_int(const std::string& sec, const std::string& key) const;
  double get_float(const std::string& sec, const std::string& key) const;
  bool get_bool(const std::string& sec, const std::string& key) const;
  std::string get_string(const std::string& sec, const std::string& key) const;
  bool has(const std::string& sec, const std::string& key) const;
  // "file:line" of a key, for errors about combinations.
  std::string where(const std::string& sec, const std::string& key) const;
};

// The host's own keys per section (plugin sections list only the keys the host reads).
const std::map<std::string, Schema>& host_schema();
// Keys the host owns inside a plugin section (skipped by the plugin's schema check).
std::vector<std::string> host_keys(const std::string& section);

// Parses `path`, applies overrides ("section.key=value", value parsed as TOML, else a string),
// validates host-owned keys. Throws core::Error naming file:line:key with a HINT.
Recipe load_recipe(const std::string& path, const std::vector<std::string>& overrides = {});
// The same from TOML text (tests, embedded defaults).
Recipe parse_recipe(const std::string& toml_text, const std::string& label,
                    const std::vector<std::string>& overrides = {});

}  // namespace megahost::core
