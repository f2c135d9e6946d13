// Basic optimizers — what AdamW and SGD share: per-parameter state tensors, the step counter,
// grouping parameters for multi-tensor (_foreach_*) updates, and the visit_state view.
//
// State lives on the parameter's device, in fp32 (fp64 for fp64 parameters; a state may be asked
// for in bf16, fp16 or fp8, Megatron's --exp-avg-dtype, for the fp32-working ones), same shape as
// the parameter. It is allocated once at setup and never reallocated, so the views visit_state
// hands out stay valid and the host can restore a checkpoint by writing into them. fp16 and fp8
// states are scaled (sdk/scaled_state.h): visit_state hands out their float32 values and stores
// back what a load wrote; update() gets them as stored, with their scales.
#pragma once

#include <ATen/ATen.h>

#include <map>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "megahost/megahost.h"

namespace megahost::optim {

// Parameters that are updated together by one _foreach_* call: same device, same working
// dtype, and the same weight-decay choice.
struct Group {
  bool decay = false;
  std::vector<at::Tensor> params;  // working copies for half-precision params, else the live views
  std::vector<at::Tensor> grads;   // in the working dtype
  std::vector<std::vector<at::Tensor>> state;  // state[k][i]: state k of param i
  // scales[k][i]: the float32 scale of a scaled (fp16 / fp8) state k of param i, else undefined.
  std::vector<std::vector<at::Tensor>> scales;
  std::vector<at::Tensor> write_back;  // live low-precision params to copy `params` into, or empty
  // Per param: the host's half-precision model parameter to receive the updated value (ABI 1.5
  // model_copies), undefined where none; empty when the host passed none.
  std::vector<at::Tensor> model_copies;
  // Per param (ABI 1.8 param_remainders), or empty: params are then the live bf16 parameters and
  // these their int16 remainders; the fp32 value is sdk::compose_fp32(params[i], remainders[i]).
  std::vector<at::Tensor> remainders;
  // Per param (ABI 1.10 param_offsets), or empty (all 0): the flat index of params[i]'s first
  // element within its whole parameter; the bf16 moments' rounding bits follow it.
  std::vector<int64_t> offsets;
  double grad_scale = 1.0;  // left for update() to apply when folds_grad_scale() said so, else 1
  at::Tensor grad_scale_tensor;  // likewise (ABI 1.7): a float32 [1] on the device, or undefined
};

class Optimizer {
 public:
  // state_names: per-parameter state, e.g. {"exp_avg", "exp_avg_sq"}. host: for errors.
  // state_dtypes: empty, or per state the storage dtype where the parameter works in fp32
  // (kFloat; kBFloat16: the update reads it as fp32 and stores it back rounded; kHalf or kByte:
  // scaled fp16 / fp8 E4M3, sdk/scaled_state.h).
  Optimizer(const mh_host* host, std::vector<std::string> state_names,
            std::vector<at::ScalarType> state_dtypes = {});
  virtual ~Optimizer() = default;

  void setup(const mh_param_view* params, size_t n);
  void step(const mh_param_view* params, size_t n, const mh_optimizer_step_args& args);
  void visit_state(const mh_param_view* params, size_t n, mh_tensor_visit_fn fn, void* ctx);

  int64_t steps_taken() const;
  // Bytes the state holds on its devices and the host (scaled states at their stored size plus
  // their scales, not the float32 tensors visit_state hands out).
  int64_t state_bytes() const;

 protected:
  // One update of one group. wd is 0 for groups without decay; t is the 1-based step count.
  virtual void update(Group& g, double lr, double wd, int64_t t) = 0;
  // update() multiplies the gradients by g.grad_scale itself (inside a fused kernel).
  virtual bool folds_grad_scale(const Group&) const { return false; }
  // update() writes g.model_copies in its own pass (else step() copies after it).
  virtual bool writes_model_copies(const Group&) const { return false; }
  // update() takes a group with remainders as it is (else step() composes fp32 working copies,
  // updates them and splits them back).
  virtual bool handles_remainders(const Group&) const { return false; }
  // Whether update() takes a bf16 gradient g of a parameter on g's device as it is (the host's
  // bf16 main gradients), not a float32 copy made each step.
  virtual bool reads_bf16_grads(const at::Tensor&) const { return false; }

 private:
  struct Slot {
    std::string name;
    std::vector<int64_t> shape;
    at::ScalarType dtype;
    at::Device device{at::kCPU};
    std::vector<at::Tensor> state;  // one per state name
    std::vector<at::Tensor> scale;  // per state: float32 [1] for a scaled (fp16 / fp8) state, else undefined
  };
  void check_same_params(const mh_param_view* params, size_t n, const char* call) const;

  // The groups of the last step and the storage they were built over: the host passes the same
  // views every step, so a step whose pointers match reuses them (building 2 torch tensors per
  // parameter each step cost milliseconds of CPU while the GPU waited).
  using GroupKey = std::tuple<std::string, int, bool, bool>;  // device, dtype, decay, remainders
  struct RangeCache {
    std::vector<const void*> storage;
    std::vector<std::pair<GroupKey, Group>> groups;
  };
  std::map<std::pair<size_t, size_t>, RangeCache> caches_;  // per parameter range (ABI 1.9)
  size_t next_range_first_ = 0;  // where the next range of a split step must start (0: a new step)
  int64_t range_step_ = 0;       // the step number the ranges of the current step share

  const mh_host* host_;
  std::vector<std::string> state_names_;
  std::vector<at::ScalarType> state_dtypes_;
  std::vector<Slot> slots_;
  // The float32 copies of scaled states visit_state handed out since the last step: kept until
  // the next step, as the host may still read them after the visit (a save writes them then).
  std::vector<at::Tensor> visit_copies_;
  at::Tensor step_;  // int64 [1] on the CPU: number of steps taken (drives bias correction)
  bool ready_ = false;
};

}  // namespace megahost::optim
