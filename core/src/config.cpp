// ConfigSection parsing and the mh.config/1 service: plugins read their recipe table through
// stable node pointers; every error names the recipe file, line and key.
#include <cstring>

#include "megahost/core/error.h"
#include "megahost/core/host_services.h"

namespace megahost::core {

ConfigSection parse_config_section(std::string_view toml_text, const std::string& file,
                                   const std::string& name) {
  ConfigSection s;
  s.file = file;
  s.name = name;
  try {
    s.table = std::make_shared<toml::table>(toml::parse(toml_text, file));
  } catch (const toml::parse_error& e) {
    throw Error(cat(file, ":", e.source().begin.line, ":", e.source().begin.column, ": ",
                    e.description(), "\nHINT: check the TOML syntax at that position"));
  }
  return s;
}

std::string where(const toml::node& n, const std::string& file) {
  const auto& src = n.source();
  if (src.begin.line == 0 || (src.path && *src.path == "--set")) return "--set";
  return cat(file, ":", src.begin.line);
}

struct ConfigTree::Node {
  const toml::node* node = nullptr;
  std::string key_path;  // "tokenizer.vocab_file"
  std::string where;     // "recipe.toml:12"
  std::string str_cache;
  std::vector<std::string> keys;  // tables only
  std::vector<Node*> children;
};

ConfigTree::ConfigTree(ConfigSection section) : section_(std::move(section)) {
  build(section_.table.get(), section_.name);
}
ConfigTree::~ConfigTree() = default;

ConfigTree::Node* ConfigTree::build(const toml::node* n, const std::string& key_path) {
  nodes_.push_back(std::make_unique<Node>());
  Node* out = nodes_.back().get();
  out->node = n;
  out->key_path = key_path;
  out->where = n->source().begin.line == 0 && key_path == section_.name ? section_.file
                                                                         : where(*n, section_.file);
  if (const auto* t = n->as_table()) {
    for (const auto& [k, v] : *t) {
      std::string key(k.str());
      out->keys.push_back(key);
      out->children.push_back(build(&v, key_path.empty() ? key : key_path + "." + key));
    }
  } else if (const auto* a = n->as_array()) {
    for (size_t i = 0; i < a->size(); ++i)
      out->children.push_back(build(a->get(i), cat(key_path, "[", i, "]")));
  } else if (const auto* s = n->as_string()) {
    out->str_cache = s->get();
  }
  return out;
}

const mh_config* ConfigTree::root() const { return reinterpret_cast<const mh_config*>(nodes_.front().get()); }

namespace {

using Node = ConfigTree::Node;
const Node* as_node(const mh_config* c) { return reinterpret_cast<const Node*>(c); }
const mh_config* as_config(const Node* n) { return reinterpret_cast<const mh_config*>(n); }

mh_error* kind_error(const Node* n, const char* want) {
  return make_error(MH_ERR_INVALID_ARG,
                    cat(n->where, ": key '", n->key_path, "' must be ", want,
                        "\nHINT: fix the value in the recipe, or override it with --set ", n->key_path, "=..."));
}

mh_error* MH_ABI cfg_get(const mh_config* c, const char* path, const mh_config** out) {
  const Node* n = as_node(c);
  if (n == nullptr || path == nullptr || out == nullptr)
    return make_error(MH_ERR_INVALID_ARG, "mh.config/1 get: NULL argument");
  std::string_view rest(path);
  while (!rest.empty()) {
    const size_t dot = rest.find('.');
    const std::string_view key = rest.substr(0, dot);
    const Node* next = nullptr;
    for (size_t i = 0; i < n->keys.size(); ++i)
      if (n->keys[i] == key) next = n->children[i];
    if (next == nullptr)
      return make_error(MH_ERR_NOT_FOUND, cat(n->where, ": [", n->key_path, "] has no key '", path, "'"));
    n = next;
    rest = dot == std::string_view::npos ? std::string_view() : rest.substr(dot + 1);
  }
  *out = as_config(n);
  return nullptr;
}

mh_config_kind MH_ABI cfg_kind(const mh_config* c) {
  const Node* n = as_node(c);
  if (n == nullptr) return MH_CONFIG_NONE;
  switch (n->node->type()) {
    case toml::node_type::table: return MH_CONFIG_TABLE;
    case toml::node_type::array: return MH_CONFIG_ARRAY;
    case toml::node_type::integer: return MH_CONFIG_INT;
    case toml::node_type::floating_point: return MH_CONFIG_FLOAT;
    case toml::node_type::boolean: return MH_CONFIG_BOOL;
    case toml::node_type::string: return MH_CONFIG_STRING;
    default: return MH_CONFIG_NONE;
  }
}

mh_error* MH_ABI cfg_i64(const mh_config* c, int64_t* out) {
  const Node* n = as_node(c);
  if (n == nullptr || out == nullptr) return make_error(MH_ERR_INVALID_ARG, "mh.config/1 as_i64: NULL argument");
  if (auto v = n->node->value_exact<int64_t>()) {
    *out = *v;
    return nullptr;
  }
  return kind_error(n, "an integer");
}
mh_error* MH_ABI cfg_f64(const mh_config* c, double* out) {
  const Node* n = as_node(c);
  if (n == nullptr || out == nullptr) return make_error(MH_ERR_INVALID_ARG, "mh.config/1 as_f64: NULL argument");
  if (auto v = n->node->value_exact<double>()) {
    *out = *v;
    return nullptr;
  }
  if (auto v = n->node->value_exact<int64_t>()) {
    *out = static_cast<double>(*v);
    return nullptr;
  }
  return kind_error(n, "a number");
}
mh_error* MH_ABI cfg_bool(const mh_config* c, bool* out) {
  const Node* n = as_node(c);
  if (n == nullptr || out == nullptr) return make_error(MH_ERR_INVALID_ARG, "mh.config/1 as_bool: NULL argument");
  if (auto v = n->node->value_exact<bool>()) {
    *out = *v;
    return nullptr;
  }
  return kind_error(n, "true or false");
}
mh_error* MH_ABI cfg_str(const mh_config* c, const char** out) {
  const Node* n = as_node(c);
  if (n == nullptr || out == nullptr) return make_error(MH_ERR_INVALID_ARG, "mh.config/1 as_str: NULL argument");
  if (!n->node->is_string()) return kind_error(n, "a string");
  *out = n->str_cache.c_str();
  return nullptr;
}
size_t MH_ABI cfg_len(const mh_config* c) {
  const Node* n = as_node(c);
  return n == nullptr ? 0 : n->children.size();
}
mh_error* MH_ABI cfg_at(const mh_config* c, size_t i, const char** out_key, const mh_config** out) {
  const Node* n = as_node(c);
  if (n == nullptr || out == nullptr) return make_error(MH_ERR_INVALID_ARG, "mh.config/1 at: NULL argument");
  if (i >= n->children.size())
    return make_error(MH_ERR_NOT_FOUND, cat(n->where, ": index ", i, " out of range for '", n->key_path, "'"));
  if (out_key != nullptr) *out_key = n->keys.empty() ? nullptr : n->keys[i].c_str();
  *out = as_config(n->children[i]);
  return nullptr;
}
const char* MH_ABI cfg_where(const mh_config* c) {
  const Node* n = as_node(c);
  return n == nullptr ? "" : n->where.c_str();
}
mh_error* MH_ABI cfg_error_at(const mh_config* c, const char* message, const char* hint) {
  const Node* n = as_node(c);
  std::string msg = n == nullptr ? std::string(message ? message : "")
                                 : cat(n->where, ": key '", n->key_path, "': ", message ? message : "");
  if (hint != nullptr && *hint != '\0') msg += cat("\nHINT: ", hint);
  return make_error(MH_ERR_INVALID_ARG, msg);
}

const mh_config_service kConfigService = {MH_TABLE_HEADER(mh_config_service),
                                          cfg_get, cfg_kind, cfg_i64, cfg_f64, cfg_bool, cfg_str,
                                          cfg_len, cfg_at, cfg_where, cfg_error_at};

}  // namespace

const mh_config_service& config_service() { return kConfigService; }

}  // namespace megahost::core
