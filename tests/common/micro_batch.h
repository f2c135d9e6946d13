// Reading the core's micro-batch tensors by name in tests (links megahost_core and libtorch).
#pragma once

#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <string>

#include "megahost/core/engine/batches.h"

namespace mhtest {

// The tensor named `name` of a batch (a test failure and an undefined tensor when there is none).
inline at::Tensor get(const megahost::core::MicroBatchTensors& b, const std::string& name) {
  for (const auto& [n, t] : b)
    if (n == name) return t;
  ADD_FAILURE() << "no batch tensor " << name;
  return {};
}

}  // namespace mhtest
