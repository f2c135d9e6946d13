// megahost SDK — the host as a plugin sees it: services, logging and recipe config.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "megahost/megahost.h"
#include "megahost/sdk/error.h"

namespace megahost::sdk {

// The host table this library was initialised with (set by the entry's init; null before).
// One pointer per plugin library, written once at init: not a registry or a logger.
const mh_host*& library_host();

// Typed service lookup. Throws when the host lacks the service.
template <typename T>
const T& service(const mh_host* host, const char* id) {
  const void* s = host->get_service(host, id);
  MH_CHECK(s != nullptr, MH_ERR_UNSUPPORTED, "host does not offer service ", id);
  return *static_cast<const T*>(s);
}

// Logging through the host's sink: log(host, MH_LOG_INFO, "tokenizer", "loaded ", n, " merges").
template <typename... Args>
void log(const mh_host* host, mh_log_level level, const char* channel, const Args&... args) {
  const auto* svc = static_cast<const mh_log_service*>(host->get_service(host, MH_SERVICE_LOG));
  if (svc == nullptr || level < svc->level(host)) return;
  const std::string msg = str_cat(args...);
  svc->log(host, level, channel, nullptr, 0, msg.c_str());
}

// Read-only view of a recipe table. The host already checked declared keys' types and filled
// defaults, so `get_*` of a declared key only fails on a plugin bug.
class Config {
 public:
  Config(const mh_host* host, const mh_config* node)
      : host_(host), node_(node), svc_(service<mh_config_service>(host, MH_SERVICE_CONFIG)) {}

  bool has(const char* key) const {
    const mh_config* child = nullptr;
    mh_error* e = svc_.get(node_, key, &child);
    if (e != nullptr) {
      host_->error_free(host_, e);
      return false;
    }
    return svc_.kind(child) != MH_CONFIG_NONE;
  }
  const mh_config* node(const char* key) const {
    const mh_config* child = nullptr;
    check_host(host_, svc_.get(node_, key, &child));
    return child;
  }
  int64_t get_int(const char* key) const {
    int64_t v = 0;
    check_host(host_, svc_.as_i64(node(key), &v));
    return v;
  }
  double get_float(const char* key) const {
    double v = 0;
    check_host(host_, svc_.as_f64(node(key), &v));
    return v;
  }
  bool get_bool(const char* key) const {
    bool v = false;
    check_host(host_, svc_.as_bool(node(key), &v));
    return v;
  }
  std::string get_string(const char* key) const {
    const char* v = nullptr;
    check_host(host_, svc_.as_str(node(key), &v));
    return v;
  }
  int64_t get_int(const char* key, int64_t fallback) const { return has(key) ? get_int(key) : fallback; }
  double get_float(const char* key, double fallback) const { return has(key) ? get_float(key) : fallback; }
  bool get_bool(const char* key, bool fallback) const { return has(key) ? get_bool(key) : fallback; }
  std::string get_string(const char* key, const std::string& fallback) const {
    return has(key) ? get_string(key) : fallback;
  }
  // An error that names the recipe file, line and key: throw config.error("hidden_size", "...", "HINT").
  HostError error(const char* key, const std::string& message, const std::string& hint) const {
    const mh_config* at = has(key) ? node(key) : node_;
    return HostError(host_, svc_.error_at(at, message.c_str(), hint.c_str()));
  }

 private:
  const mh_host* host_;
  const mh_config* node_;
  const mh_config_service& svc_;
};

}  // namespace megahost::sdk
