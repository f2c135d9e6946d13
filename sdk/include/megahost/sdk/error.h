// megahost SDK — errors inside a plugin, and the trampoline that turns them into mh_error*.
//
// Inside a plugin, code throws (MH_CHECK / sdk::Error). At every ABI entry point,
// MH_SDK_TRY { ... } MH_SDK_CATCH(host) converts any exception into a host-created mh_error*,
// so no C++ exception ever crosses the ABI.
#pragma once

#include <exception>
#include <new>
#include <sstream>
#include <stdexcept>
#include <string>

#include "megahost/megahost.h"

namespace megahost::sdk {

class Error : public std::runtime_error {
 public:
  Error(mh_status_code code, const std::string& msg) : std::runtime_error(msg), code_(code) {}
  mh_status_code code() const { return code_; }

 private:
  mh_status_code code_;
};

// Thrown by SDK wrappers when a host call returned an error: carries it unchanged.
class HostError : public std::exception {
 public:
  HostError(const mh_host* host, mh_error* err) : host_(host), err_(err) {}
  HostError(HostError&& o) noexcept : host_(o.host_), err_(o.err_) { o.err_ = nullptr; }
  HostError(const HostError&) = delete;
  ~HostError() override {
    if (err_ != nullptr) host_->error_free(host_, err_);
  }
  const char* what() const noexcept override { return host_->error_message(host_, err_); }
  mh_error* release() {
    mh_error* e = err_;
    err_ = nullptr;
    return e;
  }

 private:
  const mh_host* host_;
  mh_error* err_;
};

// Throws HostError when a host/plugin ABI call failed.
inline void check_host(const mh_host* host, mh_error* err) {
  if (err != nullptr) throw HostError(host, err);
}

template <typename... Args>
std::string str_cat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}

}  // namespace megahost::sdk

// MH_CHECK(cond, code, message...) throws sdk::Error(code, message) when cond is false.
#define MH_CHECK(cond, code, ...)                                              \
  do {                                                                         \
    if (!(cond)) throw ::megahost::sdk::Error((code), ::megahost::sdk::str_cat(__VA_ARGS__)); \
  } while (0)

// Wrap every ABI entry point's body: MH_SDK_TRY { ... } MH_SDK_CATCH(host)
// (the function returns mh_error*; the body returns nullptr on success).
#define MH_SDK_TRY try
#define MH_SDK_CATCH(host)                                                             \
  catch (::megahost::sdk::HostError & e) {                                             \
    return e.release();                                                                \
  }                                                                                    \
  catch (const ::megahost::sdk::Error& e) {                                            \
    return (host)->error_new((host), e.code(), e.what());                              \
  }                                                                                    \
  catch (const std::bad_alloc&) {                                                      \
    return (host)->error_new((host), MH_ERR_OUT_OF_MEMORY, "out of memory");           \
  }                                                                                    \
  catch (const std::exception& e) {                                                    \
    return (host)->error_new((host), MH_ERR_INTERNAL, e.what());                       \
  }                                                                                    \
  catch (...) {                                                                        \
    return (host)->error_new((host), MH_ERR_INTERNAL, "unknown exception in plugin");  \
  }
