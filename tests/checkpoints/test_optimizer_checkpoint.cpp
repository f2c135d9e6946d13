// Parameters and AdamW state through a megahost-tensors checkpoint, the way the core saves and
// resumes: after restoring into a fresh model and optimizer, the next step is bit-identical.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "../optimizers/load_only.h"
#include "../optimizers/params.h"
#include "megahost/core/instances.h"

namespace {

namespace fs = std::filesystem;
using megahost::test::Params;
using megahost::test::random_params;

TEST(OptimizerCheckpoint, ResumeGivesTheSameNextStep) {
  static const auto reg = megahost::test::load_only({MH_TEST_OPTIMIZER_PLUGIN_FILE, MH_TEST_CHECKPOINT_PLUGIN_FILE});
  const auto no_keys = megahost::core::parse_config_section("", "test.toml", "optimizer");
  const auto ck_cfg = megahost::core::parse_config_section("", "test.toml", "checkpoint");
  auto format = megahost::core::create_checkpoint_format(*reg, "megahost-tensors", ck_cfg);
  const fs::path dir = fs::temp_directory_path() / ("mh-opt-ckpt-" + std::to_string(::getpid())) / "iter_0000003";

  // A run: three steps, then a save of params and optimizer state.
  Params a = random_params(1);
  auto opt_a = megahost::core::create_optimizer(*reg, "adamw", no_keys, {kDLCPU, 0});
  opt_a->setup(*a.abi);
  for (int step = 1; step <= 3; ++step) {
    for (auto& g : a.grad) g.copy_(torch::randn_like(g));
    opt_a->step(*a.abi, 1e-2, 0.1, step);
  }
  {
    auto w = format->open_writer(dir.string());
    for (size_t i = 0; i < a.names.size(); ++i) w->tensor("model." + a.names[i], a.data[i]);
    opt_a->visit_state(*a.abi, [&](const std::string& name, at::Tensor t) { w->tensor("optimizer." + name, t); });
    w->blob("iteration", "3");
    w->commit();
  }

  // A resumed run: fresh params and optimizer, restored by writing into their live storage.
  Params b = random_params(2);
  auto opt_b = megahost::core::create_optimizer(*reg, "adamw", no_keys, {kDLCPU, 0});
  opt_b->setup(*b.abi);
  {
    auto r = format->open_reader(dir.string());
    for (size_t i = 0; i < b.names.size(); ++i) r->tensor_into("model." + b.names[i], b.data[i]);
    opt_b->visit_state(*b.abi, [&](const std::string& name, at::Tensor t) { r->tensor_into("optimizer." + name, t); });
    EXPECT_EQ(r->blob("iteration"), "3");
  }

  for (size_t i = 0; i < a.grad.size(); ++i) {
    a.grad[i].copy_(torch::randn_like(a.grad[i]));
    b.grad[i].copy_(a.grad[i]);
  }
  opt_a->step(*a.abi, 1e-2, 0.1, 4);
  opt_b->step(*b.abi, 1e-2, 0.1, 4);
  for (size_t i = 0; i < a.data.size(); ++i) EXPECT_TRUE(torch::equal(a.data[i], b.data[i])) << a.names[i];
  fs::remove_all(dir.parent_path());
}

}  // namespace
