// Recipe key validation shared by the host's own sections and plugin schemas.
#include "megahost/core/schema.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "megahost/core/error.h"
#include "megahost/core/host_services.h"
#include "megahost/core/plugins.h"

namespace megahost::core {

namespace {

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

bool type_matches(const toml::node& n, const std::string& type) {
  if (type == "int") return n.is_integer();
  if (type == "float") return n.is_floating_point() || n.is_integer();
  if (type == "bool") return n.is_boolean();
  if (type == "string" || type == "path") return n.is_string();
  if (type == "array") return n.is_array();
  if (type == "table") return n.is_table();
  return true;  // "any"
}

std::string describe_type(const std::string& type) {
  if (type == "int") return "an integer";
  if (type == "float") return "a number";
  if (type == "bool") return "true or false";
  if (type == "string") return "a string";
  if (type == "path") return "a path (string)";
  if (type == "array") return "an array";
  if (type == "table") return "a table";
  return type;
}

std::string json_to_toml_literal(const nlohmann::json& v) {
  if (v.is_string()) {
    toml::table t;
    t.insert("v", v.get<std::string>());
    std::ostringstream os;
    os << t;
    std::string s = os.str();  // "v = '...'"
    return s.substr(s.find('=') + 2);
  }
  return v.dump();  // numbers, bools, arrays of them share JSON's and TOML's spelling
}

}  // namespace

std::string closest_key(const std::string& key, const std::vector<std::string>& candidates) {
  std::string best;
  size_t best_d = std::max<size_t>(3, key.size() / 3) + 1;
  for (const auto& c : candidates) {
    const size_t d = edit_distance(key, c);
    if (d < best_d) {
      best_d = d;
      best = c;
    }
  }
  return best;
}

Schema parse_schema_json(const std::string& json, const std::string& owner) {
  Schema out;
  if (json.empty()) return out;
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(json);
  } catch (const std::exception& e) {
    throw Error(cat(owner, ": config_schema is not valid JSON: ", e.what(), "\nHINT: this is a plugin bug"));
  }
  MH_CORE_CHECK(j.is_object(), owner, ": config_schema must be a JSON object");
  for (const auto& [key, spec] : j.items()) {
    KeySpec k;
    k.type = spec.value("type", "any");
    k.required = spec.value("required", false);
    k.doc = spec.value("doc", "");
    if (spec.contains("default") && !spec["default"].is_null()) k.default_toml = json_to_toml_literal(spec["default"]);
    out[key] = k;
  }
  return out;
}

void apply_schema(const Schema& schema, ConfigSection& cfg, const std::vector<std::string>& host_keys,
                  const std::string& owner) {
  std::vector<std::string> known;
  for (const auto& [k, _] : schema) known.push_back(k);
  known.insert(known.end(), host_keys.begin(), host_keys.end());
  const std::string sec = cfg.name.empty() ? "" : cfg.name + ".";
  for (const auto& [k, v] : *cfg.table) {
    const std::string key(k.str());
    if (std::find(host_keys.begin(), host_keys.end(), key) != host_keys.end()) continue;
    auto it = schema.find(key);
    if (it == schema.end()) {
      const std::string near = closest_key(key, known);
      throw Error(cat(where(v, cfg.file), ": unknown key '", sec, key, "' for ", owner,
                      near.empty() ? "" : cat("\nHINT: did you mean '", sec, near, "'?"),
                      near.empty() ? cat("\nHINT: known keys: ", [&] {
                        std::string s;
                        for (const auto& n : known) s += (s.empty() ? "" : ", ") + n;
                        return s;
                      }())
                                   : ""));
    }
    if (!type_matches(v, it->second.type))
      throw Error(cat(where(v, cfg.file), ": key '", sec, key, "' must be ", describe_type(it->second.type),
                      it->second.doc.empty() ? "" : cat(" (", it->second.doc, ")"),
                      "\nHINT: e.g. --set ", sec, key, "=",
                      it->second.default_toml ? *it->second.default_toml : std::string("...")));
  }
  for (const auto& [key, spec] : schema) {
    if (cfg.table->contains(key)) continue;
    if (spec.required)
      throw Error(cat(cfg.file, ": [", cfg.name, "] is missing the required key '", key, "' for ", owner,
                      spec.doc.empty() ? "" : cat(" (", spec.doc, ")"), "\nHINT: add it to the recipe or pass --set ",
                      sec, key, "=..."));
    if (spec.default_toml) {
      toml::table parsed = toml::parse("v = " + *spec.default_toml);
      cfg.table->insert(key, *parsed.get("v"));
    }
  }
}

void apply_config_schema(const PluginInfo& plugin, ConfigSection& cfg, const std::vector<std::string>& host_keys) {
  const std::string owner = cat(kind_name(plugin.kind), " plugin '", plugin.id, "'");
  std::vector<std::string> keys = host_keys;
  keys.emplace_back("plugin");
  apply_schema(parse_schema_json(plugin.config_schema, owner), cfg, keys, owner);
}

}  // namespace megahost::core
