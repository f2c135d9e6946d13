// megahost core — the mh_host table and its services (log, config, run, rng), implemented once
// for the whole process and handed to every plugin at init.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "megahost/core/config.h"
#include "megahost/megahost.h"

namespace megahost::core {

// The process-wide host table (valid for the whole process).
const mh_host* host_table();

// Facts served by mh.run/1 and used by mh.rng/1; set by the engine before plugins are created.
struct RunFacts {
  int32_t rank = 0, world_size = 1, local_rank = 0;
  uint64_t seed = 1234;
  std::string recipe_path, run_dir = ".";
};
void set_run_facts(const RunFacts& facts);
const RunFacts& run_facts();

// Seed derivation used by mh.rng/1 (exposed for the engine's own generators).
uint64_t derive_seed(uint64_t base_seed, const std::string& purpose, uint64_t index, int32_t rank_or_minus1);

// Error objects: make one, read it, free it (mh_error is host-owned).
mh_error* make_error(mh_status_code code, const std::string& message);
std::string error_message(const mh_error* err);
mh_status_code error_code(const mh_error* err);
void free_error(mh_error* err);

// A config node tree over a ConfigSection, giving stable mh_config* pointers to a plugin for
// as long as the tree lives (the instance holding it).
class ConfigTree {
 public:
  explicit ConfigTree(ConfigSection section);
  ~ConfigTree();
  ConfigTree(const ConfigTree&) = delete;
  ConfigTree& operator=(const ConfigTree&) = delete;
  const mh_config* root() const;
  const ConfigSection& section() const { return section_; }

  struct Node;

 private:
  ConfigSection section_;
  std::vector<std::unique_ptr<Node>> nodes_;
  Node* build(const toml::node* n, const std::string& key_path);
};

// "file:line" of a toml node, "--set" for nodes without a source.
std::string where(const toml::node& n, const std::string& file);

}  // namespace megahost::core
