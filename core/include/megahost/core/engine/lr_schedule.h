// megahost core — Megatron's learning-rate schedule (OptimizerParamScheduler), counted in samples:
// linear warmup from lr_warmup_init to lr over warmup_steps, then constant / linear / cosine decay
// to min_lr at decay_steps, min_lr after.
#pragma once

#include <cstdint>
#include <string>

namespace megahost::core {

struct LRScheduleConfig {
  double max_lr = 0, min_lr = 0, init_lr = 0;
  double warmup_steps = 0;  // samples
  double decay_steps = 0;   // samples
  std::string style = "linear";
};

class LRSchedule {
 public:
  explicit LRSchedule(LRScheduleConfig c);
  // Learning rate after `num_steps` samples have been consumed. Iteration i (1-based) uses
  // lr_at((i - 1) * global_batch_size), as Megatron's scheduler steps after the optimizer.
  double lr_at(double num_steps) const;

 private:
  LRScheduleConfig c_;
};

}  // namespace megahost::core
