// Megatron's OptimizerParamScheduler.get_lr, counted in samples.
#include <gtest/gtest.h>

#include <cmath>

#include "megahost/core/engine/lr_schedule.h"

using megahost::core::LRSchedule;
using megahost::core::LRScheduleConfig;

namespace {
LRScheduleConfig cfg(const char* style, double warmup, double decay) {
  LRScheduleConfig c;
  c.max_lr = 1e-3;
  c.min_lr = 1e-4;
  c.warmup_steps = warmup;
  c.decay_steps = decay;
  c.style = style;
  return c;
}
}  // namespace

TEST(LRSchedule, LinearWarmupFromInitLr) {
  LRSchedule s(cfg("cosine", 100, 1000));
  EXPECT_DOUBLE_EQ(s.lr_at(0), 0.0);  // Megatron's first iteration runs at init_lr
  EXPECT_DOUBLE_EQ(s.lr_at(50), 0.5e-3);
  EXPECT_DOUBLE_EQ(s.lr_at(100), 1e-3);
}

TEST(LRSchedule, CosineDecayToMinLr) {
  LRSchedule s(cfg("cosine", 100, 1100));
  // halfway through decay: min + 0.5 * (cos(pi/2) + 1) * (max - min)
  EXPECT_NEAR(s.lr_at(600), 1e-4 + 0.5 * 0.9e-3, 1e-15);
  EXPECT_NEAR(s.lr_at(1100), 1e-4, 1e-15);
  EXPECT_DOUBLE_EQ(s.lr_at(5000), 1e-4);
}

TEST(LRSchedule, LinearDecay) {
  LRSchedule s(cfg("linear", 0, 1000));
  EXPECT_DOUBLE_EQ(s.lr_at(0), 1e-3);
  EXPECT_NEAR(s.lr_at(250), 1e-4 + 0.75 * 0.9e-3, 1e-15);
  EXPECT_NEAR(s.lr_at(1000), 1e-4, 1e-15);
}

TEST(LRSchedule, ConstantAfterWarmup) {
  LRSchedule s(cfg("constant", 10, 1000));
  EXPECT_DOUBLE_EQ(s.lr_at(5), 0.5e-3);
  EXPECT_DOUBLE_EQ(s.lr_at(999999), 1e-3);
}

TEST(LRSchedule, RejectsMinAboveMax) {
  auto c = cfg("linear", 0, 10);
  c.min_lr = 1.0;
  EXPECT_THROW(LRSchedule{c}, std::exception);
}
