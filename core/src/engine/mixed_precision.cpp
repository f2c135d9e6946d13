// Mixed precision settings and the fp16 loss scaler (see mixed_precision.h).
#include "megahost/core/engine/mixed_precision.h"

#include <algorithm>

#include "megahost/core/error.h"

namespace megahost::core {

Precision read_precision(const Recipe& r) {
  const std::string p = r.get_string("training", "precision");
  const bool bf16 = r.get_bool("training", "bf16"), fp16 = r.get_bool("training", "fp16");
  MH_CORE_CHECK(!(bf16 && fp16), r.where("training", "fp16"), ": [training] bf16 and fp16 are both true",
                "\nHINT: pick one: precision = \"bf16\" or precision = \"fp16\"");
  Precision out;
  if (p == "fp32") out = Precision::FP32;
  else if (p == "bf16") out = Precision::BF16;
  else if (p == "fp16") out = Precision::FP16;
  else
    throw Error(cat(r.where("training", "precision"), ": [training] precision = '", p, "' is not one of fp32, bf16, fp16",
                    "\nHINT: bf16 is Megatron's --bf16 (fp32 main grads and master weights)"));
  const Precision flag = bf16 ? Precision::BF16 : fp16 ? Precision::FP16 : out;
  MH_CORE_CHECK(out == Precision::FP32 || flag == out, r.where("training", "precision"), ": [training] precision = '", p,
                "' disagrees with ", bf16 ? "bf16" : "fp16", " = true\nHINT: keep one of the two settings");
  return flag;
}

at::ScalarType param_dtype(Precision p) {
  switch (p) {
    case Precision::BF16: return at::kBFloat16;
    case Precision::FP16: return at::kHalf;
    default: return at::kFloat;
  }
}

at::ScalarType main_grads_dtype(const Recipe& r, Precision p) {
  const std::string g = r.get_string("optimizer", "main_grads_dtype");
  if (g == "fp32") return at::kFloat;
  MH_CORE_CHECK(g == "bf16", r.where("optimizer", "main_grads_dtype"), ": [optimizer] main_grads_dtype = '", g,
                "' is not one of fp32, bf16\nHINT: fp32 is Megatron's default; bf16 halves the gradient buffers");
  MH_CORE_CHECK(p == Precision::BF16, r.where("optimizer", "main_grads_dtype"),
                ": [optimizer] main_grads_dtype = 'bf16' needs bf16 parameters, not ", precision_name(p),
                "\nHINT: set [training] precision = \"bf16\", or keep main_grads_dtype = \"fp32\"");
  MH_CORE_CHECK(r.get_bool("optimizer", "use_precision_aware_optimizer"), r.where("optimizer", "main_grads_dtype"),
                ": [optimizer] main_grads_dtype = 'bf16' needs use_precision_aware_optimizer = true (as Megatron's "
                "--main-grads-dtype needs --use-precision-aware-optimizer)\nHINT: add use_precision_aware_optimizer = true");
  return at::kBFloat16;
}

const char* precision_name(Precision p) {
  switch (p) {
    case Precision::BF16: return "bf16";
    case Precision::FP16: return "fp16";
    default: return "fp32";
  }
}

GradScalerConfig read_grad_scaler_config(const Recipe& r) {
  GradScalerConfig c;
  c.constant_scale = r.get_float("training", "loss_scale");
  c.initial_scale = r.get_float("training", "initial_loss_scale");
  c.min_scale = r.get_float("training", "min_loss_scale");
  c.growth_interval = r.get_int("training", "loss_scale_window");
  c.hysteresis = r.get_int("training", "hysteresis");
  MH_CORE_CHECK(c.constant_scale >= 0, r.where("training", "loss_scale"), ": loss_scale must be >= 0 (0: dynamic)");
  MH_CORE_CHECK(c.initial_scale > 0 && c.min_scale > 0 && c.min_scale <= c.initial_scale,
                r.where("training", "min_loss_scale"), ": need 0 < min_loss_scale <= initial_loss_scale",
                "\nHINT: Megatron's defaults are 1 and 2^32");
  MH_CORE_CHECK(c.growth_interval > 0, r.where("training", "loss_scale_window"), ": loss_scale_window must be > 0");
  MH_CORE_CHECK(c.hysteresis > 0, r.where("training", "hysteresis"), ": hysteresis must be > 0");
  return c;
}

GradScaler::GradScaler(const GradScalerConfig& cfg)
    : cfg_(cfg),
      scale_(cfg.constant_scale > 0 ? cfg.constant_scale : cfg.initial_scale),
      hysteresis_tracker_(cfg.hysteresis),
      state_(at::zeros({3}, at::kDouble)) {}

void GradScaler::update(bool found_inf) {
  if (cfg_.constant_scale > 0) return;
  if (found_inf) {
    growth_tracker_ = 0;
    if (--hysteresis_tracker_ <= 0) scale_ = std::max(scale_ * cfg_.backoff_factor, cfg_.min_scale);
  } else if (++growth_tracker_ == cfg_.growth_interval) {
    growth_tracker_ = 0;
    hysteresis_tracker_ = cfg_.hysteresis;
    scale_ *= cfg_.growth_factor;
  }
}

void GradScaler::visit_state(const std::function<void(const std::string&, at::Tensor)>& fn) {
  double* s = state_.data_ptr<double>();
  s[0] = scale_;
  s[1] = static_cast<double>(growth_tracker_);
  s[2] = static_cast<double>(hysteresis_tracker_);
  fn("grad_scaler.state", state_);  // [scale, growth tracker, hysteresis tracker]
  scale_ = s[0];  // a loader wrote into the tensor: take its values
  growth_tracker_ = static_cast<int64_t>(s[1]);
  hysteresis_tracker_ = static_cast<int64_t>(s[2]);
}

}  // namespace megahost::core
