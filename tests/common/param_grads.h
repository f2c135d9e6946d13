// Two registries of the same model (same parameters, same order) after a backward each: every
// parameter's gradient must be there and agree within rtol (atol 1e-6).
#pragma once

#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include "megahost/sdk/nn/params.h"

namespace mhtest {

inline void expect_same_grads(const megahost::sdk::nn::ParamRegistry& want,
                              const megahost::sdk::nn::ParamRegistry& got, double rtol) {
  ASSERT_EQ(want.params().size(), got.params().size());
  for (size_t i = 0; i < want.params().size(); ++i) {
    const auto& a = want.params()[i];
    const auto& b = got.params()[i];
    ASSERT_EQ(a.name, b.name);
    ASSERT_TRUE(a.grad.defined() && b.grad.defined()) << a.name;
    EXPECT_TRUE(at::allclose(b.grad, a.grad, rtol, 1e-6))
        << a.name << ": max difference " << (b.grad - a.grad).abs().max().item<double>();
  }
}

}  // namespace mhtest
