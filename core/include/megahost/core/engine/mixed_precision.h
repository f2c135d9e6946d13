// megahost core — mixed precision as Megatron does it (--bf16 / --fp16):
//   parameters and activations in bf16 or fp16, gradients reduced and accumulated in fp32 main
//   grads (DataParallel's buffers), the optimizer updating fp32 master weights that are copied
//   back into the half-precision parameters after each step.
//   fp16 also scales the loss so small gradients survive fp16's range: a dynamic scaler (Megatron's
//   DynamicGradScaler) halves the scale after `hysteresis` overflowing steps (the step is skipped)
//   and doubles it after `loss_scale_window` clean ones; loss_scale > 0 fixes the scale instead.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <functional>
#include <string>

#include "megahost/core/recipe.h"

namespace megahost::core {

enum class Precision { FP32, BF16, FP16 };

// [training] precision (or Megatron's bf16 / fp16 flags); errors name the key.
Precision read_precision(const Recipe& r);
at::ScalarType param_dtype(Precision p);
const char* precision_name(Precision p);
// [optimizer] main_grads_dtype: float32, or bf16 (Megatron's --main-grads-dtype bf16, which also
// needs --use-precision-aware-optimizer) for bf16 parameters; a clear error otherwise.
at::ScalarType main_grads_dtype(const Recipe& r, Precision p);

struct GradScalerConfig {
  double constant_scale = 0;  // > 0: fixed scale (Megatron's --loss-scale)
  double initial_scale = 4294967296.0;
  double min_scale = 1.0;
  double growth_factor = 2.0;
  double backoff_factor = 0.5;
  int64_t growth_interval = 1000;  // loss_scale_window
  int64_t hysteresis = 2;
};

GradScalerConfig read_grad_scaler_config(const Recipe& r);

// Megatron's DynamicGradScaler / ConstantGradScaler. scale() multiplies the backward's seed;
// update(found_inf) after each iteration's overflow check.
class GradScaler {
 public:
  explicit GradScaler(const GradScalerConfig& cfg);
  double scale() const { return scale_; }
  void update(bool found_inf);
  // Checkpoint state "grad_scaler.state" = [scale, growth tracker, hysteresis tracker]:
  // one live [3] float64 tensor a loader may write into (read back when fn returns).
  void visit_state(const std::function<void(const std::string&, at::Tensor)>& fn);

 private:
  GradScalerConfig cfg_;
  double scale_;
  int64_t growth_tracker_ = 0, hysteresis_tracker_;
  at::Tensor state_;  // [3] float64 mirror for checkpoints
};

}  // namespace megahost::core
