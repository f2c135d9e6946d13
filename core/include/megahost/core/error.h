// megahost core — the one exception type core code throws. Messages say what, where and a HINT.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace megahost::core {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& msg) : std::runtime_error(msg) {}
};

template <typename... Args>
std::string cat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}

}  // namespace megahost::core

// MH_CORE_CHECK(cond, message parts...) throws core::Error.
#define MH_CORE_CHECK(cond, ...) \
  do {                           \
    if (!(cond)) throw ::megahost::core::Error(::megahost::core::cat(__VA_ARGS__)); \
  } while (0)
