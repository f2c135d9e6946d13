// megahost core — recipe key schemas: the host's own sections and each plugin's config_schema.
// Unknown keys, wrong types and missing required keys are errors naming file:line:key with a hint.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "megahost/core/config.h"

namespace megahost::core {

struct KeySpec {
  std::string type;                          // int float bool string path array table
  std::optional<std::string> default_toml;   // default value as a TOML literal
  bool required = false;
  std::string doc;
};
using Schema = std::map<std::string, KeySpec>;

// Parses a plugin's config_schema JSON (see mh_plugin.h). Throws on malformed JSON, naming owner.
Schema parse_schema_json(const std::string& json, const std::string& owner);

// Checks cfg against schema (skipping host_keys), fills defaults. Throws core::Error.
void apply_schema(const Schema& schema, ConfigSection& cfg, const std::vector<std::string>& host_keys,
                  const std::string& owner);

// Closest candidate by edit distance, or "" when nothing is close.
std::string closest_key(const std::string& key, const std::vector<std::string>& candidates);

}  // namespace megahost::core
