// The mh_host table and the log / config / run / rng services behind it.
#include "megahost/core/host_services.h"

#include <spdlog/spdlog.h>

#include <cstring>
#include <mutex>

#include "megahost/core/error.h"

// The ABI's opaque error type, defined by the host only.
struct mh_error {
  mh_status_code code;
  std::string message;
};

namespace megahost::core {

const mh_config_service& config_service();  // config.cpp
const mh_dist_service& dist_service();      // parallel/dist_service.cpp

mh_error* make_error(mh_status_code code, const std::string& message) {
  return new mh_error{code == MH_OK ? MH_ERR_INTERNAL : code, message};
}
std::string error_message(const mh_error* err) { return err ? err->message : std::string(); }
mh_status_code error_code(const mh_error* err) { return err ? err->code : MH_OK; }
void free_error(mh_error* err) { delete err; }

namespace {

RunFacts g_run_facts;
std::mutex g_run_mutex;

// ---- errors ---------------------------------------------------------------------------------
// Returned when even an error cannot be allocated; never freed.
mh_error g_oom_error{MH_ERR_OUT_OF_MEMORY, "out of memory while creating an error"};

mh_error* MH_ABI host_error_new(const mh_host*, mh_status_code code, const char* msg) {
  try {
    return make_error(code, msg ? msg : "");
  } catch (...) {
    return &g_oom_error;
  }
}
void MH_ABI host_error_free(const mh_host*, mh_error* e) {
  if (e != &g_oom_error) delete e;
}
mh_status_code MH_ABI host_error_code(const mh_host*, const mh_error* e) { return error_code(e); }
const char* MH_ABI host_error_message(const mh_host*, const mh_error* e) {
  return e ? e->message.c_str() : "";
}

// ---- mh.log/1 -------------------------------------------------------------------------------
spdlog::level::level_enum to_spdlog(mh_log_level l) {
  switch (l) {
    case MH_LOG_TRACE: return spdlog::level::trace;
    case MH_LOG_DEBUG: return spdlog::level::debug;
    case MH_LOG_INFO: return spdlog::level::info;
    case MH_LOG_WARN: return spdlog::level::warn;
    case MH_LOG_ERROR: return spdlog::level::err;
    default: return spdlog::level::off;
  }
}
void MH_ABI log_log(const mh_host*, mh_log_level level, const char* channel, const char*, int32_t,
                    const char* msg) {
  try {
    spdlog::log(to_spdlog(level), "[{}] {}", channel ? channel : "plugin", msg ? msg : "");
  } catch (...) {
  }
}
mh_log_level MH_ABI log_level(const mh_host*) {
  switch (spdlog::get_level()) {
    case spdlog::level::trace: return MH_LOG_TRACE;
    case spdlog::level::debug: return MH_LOG_DEBUG;
    case spdlog::level::info: return MH_LOG_INFO;
    case spdlog::level::warn: return MH_LOG_WARN;
    case spdlog::level::err: return MH_LOG_ERROR;
    default: return MH_LOG_OFF;
  }
}
const mh_log_service kLogService = {MH_TABLE_HEADER(mh_log_service), log_log, log_level};

// ---- mh.run/1 -------------------------------------------------------------------------------
mh_error* MH_ABI run_info(const mh_host*, mh_run_info* out) {
  if (out == nullptr) return make_error(MH_ERR_INVALID_ARG, "mh.run/1 info: out is NULL");
  mh_run_info full{};
  full.struct_size = sizeof(mh_run_info);
  const RunFacts& f = g_run_facts;
  full.rank = f.rank;
  full.world_size = f.world_size;
  full.local_rank = f.local_rank;
  full.seed = f.seed;
  full.recipe_path = f.recipe_path.c_str();
  full.run_dir = f.run_dir.c_str();
  const uint32_t n = std::min<uint32_t>(out->struct_size, sizeof(mh_run_info));
  std::memcpy(reinterpret_cast<char*>(out) + sizeof(uint32_t),
              reinterpret_cast<const char*>(&full) + sizeof(uint32_t), n - sizeof(uint32_t));
  return nullptr;
}
const mh_run_service kRunService = {MH_TABLE_HEADER(mh_run_service), run_info};

// ---- mh.rng/1 -------------------------------------------------------------------------------
uint64_t MH_ABI rng_derive(const mh_host*, const char* purpose, uint64_t index, mh_seed_sharing sharing) {
  const RunFacts& f = g_run_facts;
  return derive_seed(f.seed, purpose ? purpose : "", index, sharing == MH_SEED_PER_RANK ? f.rank : -1);
}
const mh_rng_service kRngService = {MH_TABLE_HEADER(mh_rng_service), rng_derive};

const void* MH_ABI host_get_service(const mh_host*, const char* id) {
  if (id == nullptr) return nullptr;
  if (std::strcmp(id, MH_SERVICE_LOG) == 0) return &kLogService;
  if (std::strcmp(id, MH_SERVICE_CONFIG) == 0) return &config_service();
  if (std::strcmp(id, MH_SERVICE_RUN) == 0) return &kRunService;
  if (std::strcmp(id, MH_SERVICE_RNG) == 0) return &kRngService;
  if (std::strcmp(id, MH_SERVICE_DIST) == 0) return &dist_service();
  return nullptr;
}

const mh_host kHost = {MH_TABLE_HEADER(mh_host), nullptr, "megahost", MEGAHOST_VERSION,
                       host_get_service, host_error_new, host_error_free, host_error_code,
                       host_error_message};

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

}  // namespace

const mh_host* host_table() { return &kHost; }

void set_run_facts(const RunFacts& facts) {
  std::lock_guard<std::mutex> lock(g_run_mutex);
  g_run_facts = facts;
}
const RunFacts& run_facts() { return g_run_facts; }

uint64_t derive_seed(uint64_t base_seed, const std::string& purpose, uint64_t index, int32_t rank) {
  uint64_t h = 1469598103934665603ULL;  // FNV-1a over the purpose, then mixed with the rest
  for (unsigned char c : purpose) h = (h ^ c) * 1099511628211ULL;
  uint64_t x = splitmix64(base_seed ^ splitmix64(h));
  x = splitmix64(x ^ index);
  return splitmix64(x ^ static_cast<uint64_t>(static_cast<int64_t>(rank)));
}

}  // namespace megahost::core
