#include "megahost/core/engine/lr_schedule.h"

#include <cmath>

#include "megahost/core/error.h"

namespace megahost::core {

LRSchedule::LRSchedule(LRScheduleConfig c) : c_(std::move(c)) {
  MH_CORE_CHECK(c_.style == "constant" || c_.style == "linear" || c_.style == "cosine",
                "unknown lr_decay_style '", c_.style, "'");
  MH_CORE_CHECK(c_.min_lr <= c_.max_lr, "min_lr (", c_.min_lr, ") must not exceed lr (", c_.max_lr, ")");
}

double LRSchedule::lr_at(double num_steps) const {
  if (c_.warmup_steps > 0 && num_steps <= c_.warmup_steps)
    return c_.init_lr + (c_.max_lr - c_.init_lr) * num_steps / c_.warmup_steps;
  if (c_.style == "constant") return c_.max_lr;
  if (num_steps > c_.decay_steps) return c_.min_lr;
  const double span = c_.decay_steps - c_.warmup_steps;
  const double ratio = span <= 0 ? 1.0 : (num_steps - c_.warmup_steps) / span;
  const double coeff = c_.style == "linear" ? 1.0 - ratio : 0.5 * (std::cos(M_PI * ratio) + 1.0);
  return c_.min_lr + coeff * (c_.max_lr - c_.min_lr);
}

}  // namespace megahost::core
