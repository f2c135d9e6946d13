// megahost core — the process world (torchrun / Slurm environment) and the parallel runtime:
// every named group this rank is in, built once at start with Megatron's layout.
//
// Group names (abi/include/megahost/services/mh_dist.h): world, tp, pp, dp, cp, dp-cp, tp-cp,
// tp-pp, embedding (first + last pipeline stage; absent on middle stages), ep, expert-tp,
// expert-dp. Before init() (or without it) the runtime is a single process: every group exists
// with size 1 and no c10d at all.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <string>

#include "megahost/core/parallel/process_group.h"
#include "megahost/core/parallel/rank_layout.h"

namespace megahost::core {

struct WorldEnv {
  int rank = 0, world_size = 1, local_rank = 0, local_world_size = 1;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  std::string source = "single";  // "single", "torchrun", "slurm"
};

// torchrun's RANK/WORLD_SIZE/LOCAL_RANK/LOCAL_WORLD_SIZE/MASTER_ADDR/MASTER_PORT, else Slurm's
// SLURM_PROCID/SLURM_NTASKS/SLURM_LOCALID (MASTER_ADDR/MASTER_PORT from the environment or the
// defaults), else a single process. Errors name the bad variable.
WorldEnv read_world_env();

class ParallelRuntime {
 public:
  static ParallelRuntime& get();

  // Rendezvous over a TCPStore at MASTER_ADDR:MASTER_PORT (rank 0 hosts it; under torchrun the
  // agent's store is used) and one ProcessGroupGloo (CPU) / ProcessGroupNCCL (CUDA) per group of
  // size > 1 this rank is in. `timeout` bounds every collective. sizes.world must equal the
  // environment's WORLD_SIZE. Calling init again without shutdown() throws.
  void init(const ParallelSizes& sizes, bool use_cuda, std::chrono::milliseconds timeout);
  // Same, with an explicit world (tests, launch).
  void init(const WorldEnv& env, const ParallelSizes& sizes, bool use_cuda, std::chrono::milliseconds timeout);
  bool initialized() const { return initialized_; }
  // Drops every group and the store; the runtime is a single process again.
  void shutdown();

  const ParallelSizes& sizes() const { return sizes_; }
  const WorldEnv& env() const { return env_; }
  int rank() const { return env_.rank; }
  int world_size() const { return env_.world_size; }
  int local_rank() const { return env_.local_rank; }
  bool use_cuda() const { return use_cuda_; }
  std::chrono::milliseconds timeout() const { return timeout_; }

  // Throws naming the group when this rank is not a member (or the name is unknown).
  Group& group(const std::string& name);
  Group* find(const std::string& name);  // nullptr when not a member

  int tp_rank() { return group("tp").rank(); }
  int pp_rank() { return group("pp").rank(); }
  int dp_rank() { return group("dp").rank(); }
  int cp_rank() { return group("cp").rank(); }

  ~ParallelRuntime();

 private:
  ParallelRuntime();
  void build_single();
  struct Store;  // the c10d store (world.cpp)

  ParallelSizes sizes_;
  WorldEnv env_;
  bool use_cuda_ = false, initialized_ = false;
  std::chrono::milliseconds timeout_{std::chrono::minutes(10)};
  std::unique_ptr<Store> store_;
  std::map<std::string, std::unique_ptr<Group>> groups_;
};

}  // namespace megahost::core
