// Test helpers: the mh.dist/1 table as a plugin sees it, with tensors passed as DLPack views.
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "megahost/core/host_services.h"
#include "megahost/megahost.h"
#include "megahost/sdk/torch_interop.h"

namespace dist_test {

inline const mh_host* host() { return megahost::core::host_table(); }

inline const mh_dist_service& dist() {
  auto* d = static_cast<const mh_dist_service*>(host()->get_service(host(), MH_SERVICE_DIST));
  EXPECT_NE(d, nullptr);
  return *d;
}

inline mh_stream cpu_stream() { return mh_stream{kDLCPU, 0, nullptr}; }

// Fails the test with the error's message (and frees it) when err is set.
inline void expect_ok(mh_error* err, const char* what) {
  if (err == nullptr) return;
  ADD_FAILURE() << what << ": " << host()->error_message(host(), err);
  host()->error_free(host(), err);
}

// Takes the message of an expected error (and frees it); "" when there was none.
inline std::string take_error(mh_error* err) {
  if (err == nullptr) return "";
  std::string msg = host()->error_message(host(), err);
  host()->error_free(host(), err);
  return msg;
}

}  // namespace dist_test
