// The process world from the environment, and ParallelRuntime: a TCPStore rendezvous and one
// c10d process group per named group of size > 1 that this rank is in.
#define MEGAHOST_C10D
#include "megahost/core/parallel/world.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdlib>

#include "backend.h"
#include "megahost/core/error.h"

#if defined(USE_C10D_NCCL)
#include <c10/cuda/CUDAFunctions.h>
#endif

namespace megahost::core {
namespace {

const char* env_or(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return v && *v ? v : fallback;
}

int env_int(const char* name, const char* fallback, const std::string& source) {
  const std::string text = env_or(name, fallback);
  try {
    size_t used = 0;
    const long v = std::stol(text, &used);
    if (used == text.size() && v >= 0 && v <= (1L << 30)) return static_cast<int>(v);
  } catch (const std::exception&) {
  }
  throw Error(cat("parallel: environment variable ", name, "='", text, "' is not a non-negative integer (", source,
                  " world). HINT: set it as torchrun/Slurm do, or unset it for a single process"));
}

// Rendezvous of a group's members may wait for slow starters: never shorter than this, whatever
// the collective timeout (it is lowered to that once the group is connected).
constexpr std::chrono::milliseconds kMinRendezvous = std::chrono::minutes(5);

#if defined(USE_C10D_GLOO)
// gloo::Context's timeout, written directly: Context::setTimeout lives in libgloo, which
// libtorch wheels do not export (Debian ships it apart); the member is all it sets.
struct GlooContextTimeout : ::gloo::Context {
  static void set(::gloo::Context& c, std::chrono::milliseconds t) { c.*(&GlooContextTimeout::timeout_) = t; }
};

// ProcessGroupGloo whose collective timeout can be lowered after its (longer) rendezvous.
class GlooGroup : public c10d::ProcessGroupGloo {
 public:
  using c10d::ProcessGroupGloo::ProcessGroupGloo;
  void set_collective_timeout(std::chrono::milliseconds t) {
    for (auto& c : contexts_) GlooContextTimeout::set(*c, t);
  }
};

std::shared_ptr<::gloo::transport::Device> gloo_device(const WorldEnv& env) {
  if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME"); ifname && *ifname)
    return c10d::ProcessGroupGloo::createDeviceForInterface(ifname);
  if (env.master_addr == "127.0.0.1" || env.master_addr == "localhost")
    return c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1");
  return c10d::ProcessGroupGloo::createDefaultDevice();
}
#endif  // USE_C10D_GLOO

}  // namespace

WorldEnv read_world_env() {
  WorldEnv env;
  if (std::getenv("RANK") || std::getenv("WORLD_SIZE")) {
    env.source = "torchrun";
    env.rank = env_int("RANK", "", env.source);
    env.world_size = env_int("WORLD_SIZE", "", env.source);
    env.local_rank = env_int("LOCAL_RANK", std::to_string(env.rank).c_str(), env.source);
    env.local_world_size = env_int("LOCAL_WORLD_SIZE", std::to_string(env.world_size).c_str(), env.source);
  } else if (std::getenv("SLURM_PROCID") && std::getenv("SLURM_NTASKS")) {
    env.source = "slurm";
    env.rank = env_int("SLURM_PROCID", "", env.source);
    env.world_size = env_int("SLURM_NTASKS", "", env.source);
    env.local_rank = env_int("SLURM_LOCALID", "0", env.source);
    env.local_world_size = env_int("SLURM_NTASKS_PER_NODE", std::to_string(env.world_size).c_str(), env.source);
  } else {
    return env;
  }
  env.master_addr = env_or("MASTER_ADDR", "127.0.0.1");
  env.master_port = env_int("MASTER_PORT", "29500", env.source);
  MH_CORE_CHECK(env.world_size >= 1, "parallel: ", env.source == "slurm" ? "SLURM_NTASKS" : "WORLD_SIZE",
                " must be >= 1. HINT: the number of processes");
  MH_CORE_CHECK(env.rank < env.world_size, "parallel: ", env.source == "slurm" ? "SLURM_PROCID" : "RANK", "=",
                env.rank, " is not below the world size ", env.world_size, ". HINT: ranks are 0 .. world-1");
  MH_CORE_CHECK(env.master_port >= 1 && env.master_port <= 65535, "parallel: MASTER_PORT=", env.master_port,
                " is not a TCP port. HINT: 1 .. 65535");
  return env;
}

struct ParallelRuntime::Store {
  c10::intrusive_ptr<c10d::Store> store;
};

ParallelRuntime& ParallelRuntime::get() {
  static ParallelRuntime runtime;
  return runtime;
}

ParallelRuntime::ParallelRuntime() { build_single(); }
ParallelRuntime::~ParallelRuntime() = default;

// The group names and the axes behind them (embedding is derived from pp).
namespace {
struct NamedAxes {
  const char* name;
  const char* axes;
  bool expert;
};
const NamedAxes kNamedGroups[] = {
    {"tp", "tp", false},    {"pp", "pp", false},       {"dp", "dp", false},
    {"cp", "cp", false},    {"dp-cp", "dp-cp", false}, {"tp-cp", "tp-cp", false},
    {"tp-pp", "tp-pp", false}, {"ep", "ep", true},     {"expert-tp", "tp", true},
    {"expert-dp", "dp", true},
};
}  // namespace

void ParallelRuntime::build_single() {
  groups_.clear();
  sizes_ = ParallelSizes{};
  env_ = WorldEnv{};
  groups_["world"] = std::make_unique<Group>("world", std::vector<int>{0}, 0, nullptr);
  groups_["embedding"] = std::make_unique<Group>("embedding", std::vector<int>{0}, 0, nullptr);
  for (const auto& g : kNamedGroups) groups_[g.name] = std::make_unique<Group>(g.name, std::vector<int>{0}, 0, nullptr);
}

void ParallelRuntime::init(const ParallelSizes& sizes, bool use_cuda, std::chrono::milliseconds timeout) {
  init(read_world_env(), sizes, use_cuda, timeout);
}

void ParallelRuntime::init(const WorldEnv& env, const ParallelSizes& sizes, bool use_cuda,
                           std::chrono::milliseconds timeout) {
  MH_CORE_CHECK(!initialized_, "parallel: the runtime is already initialised. HINT: call shutdown() first");
  MH_CORE_CHECK(sizes.world == env.world_size, "parallel: the layout is for ", sizes.world, " ranks but the ",
                env.source, " world has ", env.world_size,
                ". HINT: start as many processes as tp x cp x pp x dp (megahost launch --nproc-per-node N)");
  validate(sizes);
#if !defined(USE_C10D_NCCL)
  MH_CORE_CHECK(!use_cuda || env.world_size == 1,
                "parallel: this libtorch has no NCCL; multi-process CUDA runs need the PyTorch 2.x libtorch. "
                "HINT: run on CPU (Gloo) or build megahost against a CUDA libtorch");
#endif
#if !defined(USE_C10D_GLOO)
  MH_CORE_CHECK(use_cuda || env.world_size == 1,
                "parallel: this build has no Gloo (the libtorch came without gloo's headers), so several processes "
                "cannot train on the CPU. HINT: train on CUDA (NCCL), or use the Debian build (libgloo-dev)");
#endif
  groups_.clear();
  sizes_ = sizes;
  env_ = env;
  use_cuda_ = use_cuda;
  timeout_ = timeout;
  const int rank = env.rank;

  if (env.world_size > 1) {
    c10d::TCPStoreOptions opts;
    opts.port = static_cast<std::uint16_t>(env.master_port);
    // Under torchrun the agent already hosts a store on MASTER_PORT; join it (as PyTorch does).
    const bool agent_store = std::string(env_or("TORCHELASTIC_USE_AGENT_STORE", "")) == "True";
    opts.isServer = rank == 0 && !agent_store;
    opts.numWorkers = env.world_size;
    opts.waitWorkers = false;
    opts.timeout = std::max(timeout, kMinRendezvous);
    try {
      c10::intrusive_ptr<c10d::Store> tcp = c10::make_intrusive<c10d::TCPStore>(env.master_addr, opts);
      if (agent_store)
        tcp = c10::make_intrusive<c10d::PrefixStore>(
            cat("/worker/attempt_", env_or("TORCHELASTIC_RESTART_COUNT", "0")), tcp);
      store_ = std::make_unique<Store>(Store{tcp});
    } catch (const std::exception& e) {
      throw Error(cat("parallel: rank ", rank, " could not reach the rendezvous store at ", env.master_addr, ":",
                      env.master_port, ": ", e.what(),
                      "\nHINT: MASTER_ADDR/MASTER_PORT must be reachable from every rank and the port free on rank 0"));
    }
#if defined(USE_C10D_NCCL)
    if (use_cuda) c10::cuda::set_device(static_cast<c10::DeviceIndex>(env.local_rank));
#endif
  }

  // One backend per group; groups are created in the same order on every rank, and a rank only
  // joins the one group of each name that holds it.
  auto make_group = [&](const std::string& name, int index, const std::vector<int>& ranks) {
    std::unique_ptr<Group::Backend> backend;
    if (ranks.size() > 1) {
      const int my = static_cast<int>(std::find(ranks.begin(), ranks.end(), rank) - ranks.begin());
      auto prefixed = c10::make_intrusive<c10d::PrefixStore>(cat("mh/", name, "/", index), store_->store);
      backend = std::make_unique<Group::Backend>();
      try {
#if defined(USE_C10D_NCCL)
        if (use_cuda) {
          auto o = c10d::ProcessGroupNCCL::Options::create();
          o->timeout = timeout;
          backend->pg = c10::make_intrusive<c10d::ProcessGroupNCCL>(prefixed, my, static_cast<int>(ranks.size()), o);
          backend->nccl = true;
        }
#endif
#if defined(USE_C10D_GLOO)
        if (!backend->pg) {
          auto o = c10d::ProcessGroupGloo::Options::create(std::max(timeout, kMinRendezvous));
          o->devices.push_back(gloo_device(env));
          auto gloo = c10::make_intrusive<GlooGroup>(prefixed, my, static_cast<int>(ranks.size()), o);
          gloo->set_collective_timeout(timeout);
          backend->pg = gloo;
        }
#endif
      } catch (const std::exception& e) {
        throw Error(cat("parallel: rank ", rank, " could not connect group '", name, "' (ranks ",
                        c10::Join(",", ranks), "): ", e.what(),
                        "\nHINT: every rank must start and reach the same point; see the other ranks' output"));
      }
    }
    groups_[name] = std::make_unique<Group>(name, ranks, rank, std::move(backend));
  };

  std::vector<int> all(env.world_size);
  for (int r = 0; r < env.world_size; ++r) all[r] = r;
  make_group("world", 0, all);
  for (const auto& g : kNamedGroups) {
    const auto lists = rank_groups(sizes, g.axes, g.expert);
    for (size_t i = 0; i < lists.size(); ++i)
      if (std::find(lists[i].begin(), lists[i].end(), rank) != lists[i].end()) make_group(g.name, static_cast<int>(i), lists[i]);
  }
  // Embedding: first and last stage of each pipeline group; middle stages are in none.
  const auto pp_lists = rank_groups(sizes, "pp", false);
  for (size_t i = 0; i < pp_lists.size(); ++i) {
    const auto emb = embedding_ranks(pp_lists[i]);
    if (std::find(emb.begin(), emb.end(), rank) != emb.end()) make_group("embedding", static_cast<int>(i), emb);
  }
  initialized_ = true;
  spdlog::debug("parallel: rank {} of {} ({}), tp {} pp {} cp {} dp {} ep {}", rank, env.world_size, env.source,
                sizes.tp, sizes.pp, sizes.cp, sizes.dp(), sizes.ep);
}

void ParallelRuntime::shutdown() {
  groups_.clear();
  store_.reset();
  initialized_ = false;
  use_cuda_ = false;
  build_single();
}

Group& ParallelRuntime::group(const std::string& name) {
  if (Group* g = find(name)) return *g;
  throw Error(cat("parallel: rank ", rank(), " is not a member of group '", name, "'",
                  name == "embedding" ? " (middle pipeline stages have no embedding group)" : "",
                  ". HINT: groups are world, tp, pp, dp, cp, dp-cp, tp-cp, tp-pp, embedding, ep, expert-tp, expert-dp; "
                  "use find() where a group may be absent"));
}

Group* ParallelRuntime::find(const std::string& name) {
  auto it = groups_.find(name);
  return it == groups_.end() ? nullptr : it->second.get();
}

}  // namespace megahost::core
