// Megatron's DynamicGradScaler semantics (megatron/core/optimizer/grad_scaler.py) and the
// precision keys.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "megahost/core/engine/mixed_precision.h"
#include "megahost/core/error.h"
#include "megahost/core/recipe.h"

namespace core = megahost::core;

namespace {

core::GradScalerConfig dynamic(double initial, int64_t window, int64_t hysteresis) {
  core::GradScalerConfig c;
  c.initial_scale = initial;
  c.min_scale = 1.0;
  c.growth_interval = window;
  c.hysteresis = hysteresis;
  return c;
}

core::Recipe recipe_with(const std::string& training_lines) {
  const auto path = std::filesystem::temp_directory_path() / "megahost_precision_recipe.toml";
  std::ofstream(path) << "[model]\nplugin = 'gpt'\n[optimizer]\nlr = 1e-3\n[training]\ntrain_iters = 1\n" << training_lines;
  return core::load_recipe(path.string(), {});
}

}  // namespace

TEST(GradScaler, HysteresisThenHalving) {
  core::GradScaler s(dynamic(65536, 1000, 2));
  EXPECT_EQ(s.scale(), 65536);
  s.update(true);  // first overflow: hysteresis 2 -> 1, scale kept
  EXPECT_EQ(s.scale(), 65536);
  s.update(true);  // second: hysteresis exhausted, halve
  EXPECT_EQ(s.scale(), 32768);
  s.update(true);  // stays exhausted until a growth: every further overflow halves
  EXPECT_EQ(s.scale(), 16384);
}

TEST(GradScaler, GrowsAfterTheWindowAndNeverBelowTheMinimum) {
  core::GradScaler s(dynamic(4, 3, 1));
  s.update(false);
  s.update(false);
  EXPECT_EQ(s.scale(), 4);
  s.update(false);  // 3 clean steps: double
  EXPECT_EQ(s.scale(), 8);
  s.update(false);
  s.update(true);  // an overflow resets the growth count
  EXPECT_EQ(s.scale(), 4);
  s.update(false);
  s.update(false);
  EXPECT_EQ(s.scale(), 4);
  for (int i = 0; i < 10; ++i) s.update(true);
  EXPECT_EQ(s.scale(), 1);  // min_loss_scale
}

TEST(GradScaler, ConstantScaleNeverMoves) {
  core::GradScalerConfig c = dynamic(65536, 1, 1);
  c.constant_scale = 128;
  core::GradScaler s(c);
  for (bool inf : {true, false, false, true}) s.update(inf);
  EXPECT_EQ(s.scale(), 128);
}

TEST(GradScaler, StateRoundTripsThroughTheCheckpointTensor) {
  core::GradScaler a(dynamic(1024, 2, 2));
  a.update(true);   // hysteresis 1
  a.update(false);  // growth tracker 1
  at::Tensor saved;
  a.visit_state([&](const std::string& name, at::Tensor t) {
    EXPECT_EQ(name, "grad_scaler.state");
    saved = t.clone();
  });
  core::GradScaler b(dynamic(1024, 2, 2));
  b.visit_state([&](const std::string&, at::Tensor t) { t.copy_(saved); });  // a load writes into it
  // Same future: one more clean step grows both; then two overflows halve both.
  for (bool inf : {false, true, true}) {
    a.update(inf);
    b.update(inf);
    EXPECT_EQ(a.scale(), b.scale());
  }
  EXPECT_EQ(b.scale(), 1024);  // 1024 -> 2048 (growth) -> 2048 (hysteresis) -> 1024
}

TEST(Precision, KeysAndMegatronFlags) {
  EXPECT_EQ(core::read_precision(recipe_with("")), core::Precision::FP32);
  EXPECT_EQ(core::read_precision(recipe_with("precision = 'bf16'\n")), core::Precision::BF16);
  EXPECT_EQ(core::read_precision(recipe_with("bf16 = true\n")), core::Precision::BF16);
  EXPECT_EQ(core::read_precision(recipe_with("fp16 = true\nprecision = 'fp16'\n")), core::Precision::FP16);
  EXPECT_EQ(core::param_dtype(core::Precision::BF16), at::kBFloat16);
  auto refused = [](const std::string& lines, const std::string& needle) {
    try {
      core::read_precision(recipe_with(lines));
      ADD_FAILURE() << "accepted: " << lines;
    } catch (const core::Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  refused("precision = 'fp8'\n", "precision = 'fp8' is not one of fp32, bf16, fp16");
  refused("bf16 = true\nfp16 = true\n", "bf16 and fp16 are both true");
  refused("precision = 'fp16'\nbf16 = true\n", "disagrees with bf16 = true");
}
