// A minimal mh_host for testing model plugins without the core: errors, log, config (a toml++
// table), run and rng services; plus dlopen of a plugin library and an RAII model handle.
#pragma once

#include <dlfcn.h>
#include <gtest/gtest.h>
#include <toml++/toml.h>

#include <ATen/ATen.h>

#include <deque>
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "megahost/megahost.h"
#include "megahost/sdk/torch_interop.h"

struct mh_error {
  mh_status_code code;
  std::string message;
};

namespace mhtest {

// ---- errors ----
inline mh_error* MH_ABI host_error_new(const mh_host*, mh_status_code code, const char* msg) {
  return new mh_error{code, msg ? msg : ""};
}
inline void MH_ABI host_error_free(const mh_host*, mh_error* e) { delete e; }
inline mh_status_code MH_ABI host_error_code(const mh_host*, const mh_error* e) { return e ? e->code : MH_OK; }
inline const char* MH_ABI host_error_message(const mh_host*, const mh_error* e) { return e ? e->message.c_str() : ""; }

// ---- log: kept for tests to read ----
inline std::vector<std::string>& log_lines() {
  static std::vector<std::string> lines;
  return lines;
}
inline void MH_ABI host_log(const mh_host*, mh_log_level, const char* channel, const char*, int32_t, const char* msg) {
  log_lines().push_back(std::string(channel ? channel : "") + ": " + (msg ? msg : ""));
}
inline mh_log_level MH_ABI host_log_level(const mh_host*) { return MH_LOG_DEBUG; }
inline const mh_log_service kLog = {MH_TABLE_HEADER(mh_log_service), host_log, host_log_level};

// ---- config: a node is a toml::node plus its dotted key; nodes live as long as their tree ----
struct ConfigNode {
  const toml::node* node;
  std::string key;
  std::string str;  // string value cache
  std::vector<std::pair<std::string, const ConfigNode*>> children;
};

class ConfigTree {
 public:
  explicit ConfigTree(const std::string& toml_text) : table_(toml::parse(toml_text)) { root_ = build(&table_, ""); }
  const mh_config* root() const { return reinterpret_cast<const mh_config*>(root_); }

 private:
  const ConfigNode* build(const toml::node* n, const std::string& key) {
    nodes_.push_back(ConfigNode{n, key, {}, {}});
    ConfigNode* out = &nodes_.back();
    if (auto s = n->value<std::string>()) out->str = *s;
    if (const toml::table* t = n->as_table())
      for (const auto& [k, v] : *t) {
        const std::string child_key = key.empty() ? std::string(k.str()) : key + "." + std::string(k.str());
        out->children.emplace_back(std::string(k.str()), build(&v, child_key));
      }
    return out;
  }
  toml::table table_;
  std::deque<ConfigNode> nodes_;
  const ConfigNode* root_;
};

inline const ConfigNode* as_node(const mh_config* c) { return reinterpret_cast<const ConfigNode*>(c); }
inline mh_error* kind_error(const ConfigNode* n, const char* want) {
  return new mh_error{MH_ERR_INVALID_ARG, "test.toml: key '" + n->key + "' must be " + want};
}

inline mh_error* MH_ABI cfg_get(const mh_config* c, const char* path, const mh_config** out) {
  const ConfigNode* n = as_node(c);
  std::string rest = path;
  while (n != nullptr && !rest.empty()) {
    const size_t dot = rest.find('.');
    const std::string head = rest.substr(0, dot);
    rest = dot == std::string::npos ? "" : rest.substr(dot + 1);
    const ConfigNode* next = nullptr;
    for (const auto& [k, child] : n->children)
      if (k == head) next = child;
    n = next;
  }
  if (n == nullptr) return new mh_error{MH_ERR_NOT_FOUND, std::string("test.toml: no key '") + path + "'"};
  *out = reinterpret_cast<const mh_config*>(n);
  return nullptr;
}
inline mh_config_kind MH_ABI cfg_kind(const mh_config* c) {
  const ConfigNode* n = as_node(c);
  if (n == nullptr) return MH_CONFIG_NONE;
  if (n->node->is_table()) return MH_CONFIG_TABLE;
  if (n->node->is_array()) return MH_CONFIG_ARRAY;
  if (n->node->is_integer()) return MH_CONFIG_INT;
  if (n->node->is_floating_point()) return MH_CONFIG_FLOAT;
  if (n->node->is_boolean()) return MH_CONFIG_BOOL;
  if (n->node->is_string()) return MH_CONFIG_STRING;
  return MH_CONFIG_NONE;
}
inline mh_error* MH_ABI cfg_i64(const mh_config* c, int64_t* out) {
  const ConfigNode* n = as_node(c);
  if (auto v = n->node->value_exact<int64_t>()) return *out = *v, nullptr;
  return kind_error(n, "an integer");
}
inline mh_error* MH_ABI cfg_f64(const mh_config* c, double* out) {
  const ConfigNode* n = as_node(c);
  if (auto v = n->node->value_exact<double>()) return *out = *v, nullptr;
  if (auto v = n->node->value_exact<int64_t>()) return *out = static_cast<double>(*v), nullptr;
  return kind_error(n, "a number");
}
inline mh_error* MH_ABI cfg_bool(const mh_config* c, bool* out) {
  const ConfigNode* n = as_node(c);
  if (auto v = n->node->value_exact<bool>()) return *out = *v, nullptr;
  return kind_error(n, "true or false");
}
inline mh_error* MH_ABI cfg_str(const mh_config* c, const char** out) {
  const ConfigNode* n = as_node(c);
  if (!n->node->is_string()) return kind_error(n, "a string");
  *out = n->str.c_str();
  return nullptr;
}
inline size_t MH_ABI cfg_len(const mh_config* c) { return as_node(c)->children.size(); }
inline mh_error* MH_ABI cfg_at(const mh_config* c, size_t i, const char** key, const mh_config** out) {
  const ConfigNode* n = as_node(c);
  if (i >= n->children.size()) return new mh_error{MH_ERR_NOT_FOUND, "index out of range"};
  if (key != nullptr) *key = n->children[i].first.c_str();
  *out = reinterpret_cast<const mh_config*>(n->children[i].second);
  return nullptr;
}
inline const char* MH_ABI cfg_where(const mh_config*) { return "test.toml"; }
inline mh_error* MH_ABI cfg_error_at(const mh_config* c, const char* message, const char* hint) {
  const ConfigNode* n = as_node(c);
  std::string msg = "test.toml: key '" + (n ? n->key : std::string()) + "': " + (message ? message : "");
  if (hint != nullptr && *hint != '\0') msg += std::string("\nHINT: ") + hint;
  return new mh_error{MH_ERR_INVALID_ARG, msg};
}
inline const mh_config_service kConfig = {MH_TABLE_HEADER(mh_config_service), cfg_get, cfg_kind, cfg_i64,
                                          cfg_f64, cfg_bool, cfg_str, cfg_len, cfg_at, cfg_where, cfg_error_at};

// ---- run and rng: the seed is the test's knob ----
inline uint64_t& recipe_seed() {
  static uint64_t seed = 1234;
  return seed;
}
inline mh_error* MH_ABI run_info(const mh_host*, mh_run_info* out) {
  out->rank = 0;
  out->world_size = 1;
  out->local_rank = 0;
  out->seed = recipe_seed();
  out->recipe_path = "test.toml";
  out->run_dir = ".";
  return nullptr;
}
inline const mh_run_service kRun = {MH_TABLE_HEADER(mh_run_service), run_info};
inline uint64_t MH_ABI derive_seed(const mh_host*, const char* purpose, uint64_t index, mh_seed_sharing) {
  uint64_t h = recipe_seed() * 0x9e3779b97f4a7c15ull + index;
  for (const char* p = purpose; *p; ++p) h = (h ^ static_cast<unsigned char>(*p)) * 1099511628211ull;
  return h;
}
inline const mh_rng_service kRng = {MH_TABLE_HEADER(mh_rng_service), derive_seed};

inline const void* MH_ABI host_get_service(const mh_host*, const char* id) {
  const std::string s = id;
  if (s == MH_SERVICE_LOG) return &kLog;
  if (s == MH_SERVICE_CONFIG) return &kConfig;
  if (s == MH_SERVICE_RUN) return &kRun;
  if (s == MH_SERVICE_RNG) return &kRng;
  return nullptr;
}

inline const mh_host* test_host() {
  static const mh_host host = {MH_TABLE_HEADER(mh_host), nullptr,           "megahost-test",   "0.0.0",
                               host_get_service,         host_error_new,    host_error_free,   host_error_code,
                               host_error_message};
  return &host;
}

// Takes an error's message and frees it ("" for NULL).
inline std::string take_error(mh_error* e) {
  if (e == nullptr) return "";
  std::string m = e->message;
  delete e;
  return m;
}

// ---- the gpt plugin library, loaded once ----
inline const mh_model_factory* gpt_factory() {
  static const mh_model_factory* factory = [] {
    const std::string path = std::string(MEGAHOST_BUILD_PLUGIN_DIR) + "/libmegahost_model_gpt.so";
    void* lib = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (lib == nullptr) throw std::runtime_error("dlopen " + path + ": " + dlerror());
    const auto* entry = static_cast<const mh_plugin_entry_v1*>(dlsym(lib, MH_PLUGIN_ENTRY_SYMBOL_V1));
    if (entry == nullptr) throw std::runtime_error(path + " has no " MH_PLUGIN_ENTRY_SYMBOL_V1);
    if (mh_error* e = entry->init(test_host(), path.c_str())) throw std::runtime_error(take_error(e));
    return static_cast<const mh_model_factory*>(entry->get_factory(MH_FACTORY_MODEL));
  }();
  return factory;
}

struct ParamRef {
  std::string name;
  at::Tensor data, grad;  // live views of the model's storage
  int32_t tp_dim;
  uint32_t flags;
};

// A model instance through the ABI, as the core would drive it.
class TestModel {
 public:
  // Creates the model; on failure error() holds the message and ok() is false.
  TestModel(const std::string& toml_text, int64_t padded_vocab_size, uint64_t seed = 1234,
            const char* id = "gpt", DLDevice device = {kDLCPU, 0})
      : config_(toml_text) {
    recipe_seed() = seed;
    mh_model_create_args args{};
    args.struct_size = sizeof(args);
    args.config = config_.root();
    args.instance_name = "model";
    args.device = device;
    args.param_dtype = {kDLFloat, 32, 1};
    args.padded_vocab_size = padded_vocab_size;
    error_ = take_error(gpt_factory()->create(id, test_host(), &args, &m_, &api_));
  }
  ~TestModel() {
    if (m_ != nullptr) api_->destroy(m_);
  }
  TestModel(const TestModel&) = delete;
  TestModel& operator=(const TestModel&) = delete;

  bool ok() const { return m_ != nullptr; }
  const std::string& error() const { return error_; }
  mh_model* raw() const { return m_; }
  const mh_model_api* api() const { return api_; }

  std::vector<ParamRef> params() const {
    std::vector<ParamRef> out;
    expect_ok(api_->visit_params(
        m_,
        [](void* ctx, const mh_param_view* p) -> mh_error* {
          static_cast<std::vector<ParamRef>*>(ctx)->push_back({p->name, megahost::sdk::to_torch(p->data),
                                                               megahost::sdk::to_torch(p->grad),
                                                               p->tensor_parallel_dim, p->flags});
          return nullptr;
        },
        &out));
    return out;
  }

  // Returns the error message ("" on success); fills loss.
  std::string forward_backward(const std::vector<std::pair<std::string, at::Tensor>>& batch, double grad_scale,
                               mh_loss* loss) {
    Views v(batch);
    return take_error(api_->forward_backward(m_, v.named.data(), v.named.size(), grad_scale, cpu_stream(), loss));
  }
  std::string forward_loss(const std::vector<std::pair<std::string, at::Tensor>>& batch, mh_loss* loss) {
    Views v(batch);
    return take_error(api_->forward_loss(m_, v.named.data(), v.named.size(), cpu_stream(), loss));
  }
  void set_training(bool t) { expect_ok(api_->set_training(m_, t)); }
  void zero_grad() { expect_ok(api_->zero_grad(m_, cpu_stream())); }

  // Logits through the mh.model.logits/1 extension: [b, s, V] float32 (copied).
  at::Tensor logits(const at::Tensor& tokens) {
    const auto* ext = static_cast<const mh_model_logits_ext*>(api_->get_extension(m_, MH_EXT_MODEL_LOGITS));
    EXPECT_NE(ext, nullptr);
    megahost::sdk::DLView view(tokens);
    at::Tensor out;
    expect_ok(ext->logits(
        m_, view.get(), cpu_stream(),
        [](void* ctx, const mh_named_tensor* t) -> mh_error* {
          *static_cast<at::Tensor*>(ctx) = megahost::sdk::to_torch(t->tensor).clone();
          return nullptr;
        },
        &out));
    return out;
  }

  static mh_stream cpu_stream() { return mh_stream{kDLCPU, 0, nullptr}; }
  static void expect_ok(mh_error* e) {
    const std::string m = take_error(e);
    EXPECT_EQ(m, "");
  }

 private:
  struct Views {
    std::vector<std::unique_ptr<megahost::sdk::DLView>> views;
    std::vector<std::string> names;
    std::vector<mh_named_tensor> named;
    explicit Views(const std::vector<std::pair<std::string, at::Tensor>>& batch) {
      for (const auto& [name, t] : batch) {
        views.push_back(std::make_unique<megahost::sdk::DLView>(t));
        names.push_back(name);
      }
      for (size_t i = 0; i < batch.size(); ++i) named.push_back({names[i].c_str(), views[i]->get()});
    }
  };
  ConfigTree config_;
  mh_model* m_ = nullptr;
  const mh_model_api* api_ = nullptr;
  std::string error_;
};

}  // namespace mhtest
