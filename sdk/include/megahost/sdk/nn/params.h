// megahost SDK — the parameter registry of a model: creation, Megatron-style init, gradients
// that never move, and the mh_param_view each parameter shows the host.
//
// Every parameter is a leaf at::Tensor with requires_grad, registered under its Megatron-Core
// state-dict name. Its gradient is allocated at creation (zeros, same shape, dtype, device) and
// installed as the tensor's .grad: autograd then accumulates into that storage in place (it only
// replaces a defined .grad when create_graph=true), so the DLPack views handed to the host stay
// valid for the model's lifetime.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "megahost/megahost.h"

namespace torch::autograd {
struct Node;
}

namespace megahost::sdk::nn {

// How a parameter is first filled (Megatron: weights normal(0, std), biases zero, norm weights one).
struct Init {
  enum class Kind { Zeros, Ones, Normal };
  Kind kind = Kind::Zeros;
  double std = 0.0;

  static Init zeros() { return {Kind::Zeros, 0.0}; }
  static Init ones() { return {Kind::Ones, 0.0}; }
  static Init normal(double std) { return {Kind::Normal, std}; }
};

// "a.b" + "c" -> "a.b.c" (an empty prefix adds nothing).
std::string join_name(const std::string& prefix, const std::string& name);

// The seed of one parameter's generator: a mix of the model's init seed and its name, so a
// parameter gets the same values whichever other parameters this process builds (pipeline
// stages hold different layers; creation order may change).
uint64_t param_seed(uint64_t init_seed, const std::string& name);

struct Param {
  std::string name;             // "decoder.layers.0.mlp.linear_fc1.weight"
  at::Tensor data;              // the leaf parameter, contiguous, requires_grad
  at::Tensor grad;              // same shape; data.grad() is this tensor
  int32_t tensor_parallel_dim;  // dim split across tensor-parallel ranks, -1 if replicated
  uint32_t flags;               // MH_PARAM_*
};

class ParamRegistry {
 public:
  // init_seed: the host's derive_seed("model.init", 0, MH_SEED_SAME_ON_ALL_RANKS).
  ParamRegistry(at::Device device, at::ScalarType dtype, uint64_t init_seed);
  ~ParamRegistry();
  ParamRegistry(const ParamRegistry&) = delete;
  ParamRegistry& operator=(const ParamRegistry&) = delete;

  // Creates, initialises and registers a parameter; returns the leaf tensor. Normal draws come
  // from a CPU generator seeded with param_seed(init_seed, name), in float32, then are cast and
  // copied to the device: the values do not depend on device or dtype.
  at::Tensor create(const std::string& name, at::IntArrayRef shape, const Init& init,
                    int32_t tensor_parallel_dim, uint32_t flags);

  // Tensor parallelism (added by helper "tp"): draws the FULL tensor exactly as create() does
  // (same seed, same values), then registers only this rank's slice along tensor_parallel_dim:
  // tp_size equal parts, part tp_rank. With glu_halves the dim holds two halves (GLU gate, up),
  // each split on its own: the rank keeps [gate part, up part] and MH_PARAM_TP_GLU_HALVES is set.
  // tp_size == 1 is create().
  at::Tensor create_sharded(const std::string& name, at::IntArrayRef full_shape, const Init& init,
                            int32_t tensor_parallel_dim, int64_t tp_rank, int64_t tp_size, uint32_t flags,
                            bool glu_halves = false);

  void add_flags(const std::string& name, uint32_t flags);  // throws if the name is unknown
  const Param* find(const std::string& name) const;          // nullptr if unknown
  const std::vector<Param>& params() const { return params_; }
  int64_t numel() const;

  // Zeroes every gradient in place (never frees or replaces it). Also repairs a .grad that
  // someone replaced, so the host's views stay live.
  void zero_grad();

  // mh_model_api.zero_grad_deferred: every gradient counts as zero until its first write of the
  // next backward, which stores instead of adding. The fused layers ask take_deferred_zero()
  // before they write (a weight-gradient GEMM then runs with beta = 0, column sums assign, the
  // embedding zeroes its table first); a pre-hook on each parameter's gradient accumulator zeroes
  // the gradient before autograd adds into it. finish_deferred_zero() (after each backward)
  // zeroes whatever that backward did not write.
  void zero_grad_deferred();
  void finish_deferred_zero();
  // Where the deferral stands: every gradient still counts as zero (kAll), none does (kNone), or
  // some do (kMixed: a backward is half done). A recorded CUDA graph replays one of the first two.
  enum class DeferredZero { kNone, kAll, kMixed };
  DeferredZero deferred_zero_state() const;
  // Drops every pending deferral without zeroing: a replayed graph did the zeroing and the stores.
  void clear_deferred_zero();
  // Bumped by every bind(): what a recorded CUDA graph read and wrote may have moved.
  uint64_t storage_generation() const { return storage_generation_; }
  // Whether bind() installed grad_ready callbacks (the host's overlapped gradient reduction).
  bool has_grad_ready_hooks() const { return !grad_accumulators_.empty(); }
  // New gradient accumulators, made under the caller's current stream, the deferred-zero hooks
  // moved onto them. Autograd accumulates a parameter's gradient on the stream its accumulator was
  // made on; a CUDA graph recorded on a side stream needs that stream. Throws with grad_ready
  // hooks bound. The old accumulators must have no other owner (no autograd graph alive).
  void rebuild_accumulators();

  // mh_model_api.bind_storage: moves parameter i (creation order = visit order) onto the host's
  // storage. bindings[i].data (NULL keeps ours) gets the current value, then the parameter's
  // TensorImpl is pointed at it (Tensor::set_data: every layer holding the tensor sees it; it
  // stays a leaf with requires_grad). bindings[i].grad (NULL keeps ours) becomes .grad, so
  // backward accumulates there. With grad_ready, a post hook on each parameter's gradient
  // accumulator calls grad_ready(ctx, i) once per backward, after the accumulation (or, for a
  // weight whose fused layer added the gradient itself, from notify_grad_accumulated). Every
  // binding is checked before anything changes: all or nothing. Throws sdk::Error.
  void bind(const mh_param_binding* bindings, size_t n, mh_grad_ready_fn grad_ready, void* ctx);

  // Calls fn once per parameter, in creation order, with an mh_param_view whose DLTensors are
  // borrowed for the callback. Returns the first visitor error (the visit stops there).
  mh_error* visit(mh_param_visit_fn fn, void* ctx) const;

  at::Device device() const { return device_; }
  at::ScalarType dtype() const { return dtype_; }

  // ---- the parameter gate (mh_model_api.set_param_gate, ABI 1.9) ----
  //
  // With a gate set, a forward names every parameter to the host before it first reads it, so
  // the host can leave parameter updates in flight after a step. Models built from this SDK get
  // that without code of their own: each forward runs inside a ForwardScope, and
  //   - the scope's start names every parameter no transformer layer holds, except the ones
  //     after the last layer (embeddings first: they are read first);
  //   - TransformerBlock names each layer's parameters right before the layer runs, and after
  //     the registry's last layer the parameters that follow it (final norm, output layer);
  //   - the scope's end names whatever is left, before backward is queued.
  // Naming early is always safe (the host then waits earlier than it had to); a model that reads
  // a parameter outside these rules must call gate() itself.
  void set_gate(mh_param_gate_fn fn, void* ctx);
  bool has_gate() const { return gate_fn_ != nullptr; }
  // Parameters [first, first + count) (creation order) are about to be read. No-op without a gate.
  void gate(size_t first, size_t count);
  // The parameters after the registry's last transformer layer (the last block calls it).
  void gate_after_layers();
  // TransformerBlock: parameters [first, first + count) form one transformer layer.
  void mark_layer(size_t first, size_t count);
  // Whether [first, first + count) is the registry's last marked layer.
  bool is_last_layer(size_t first, size_t count) const;

  class ForwardScope {
   public:
    explicit ForwardScope(ParamRegistry& reg);
    ~ForwardScope() { end(); }
    ForwardScope(const ForwardScope&) = delete;
    ForwardScope& operator=(const ForwardScope&) = delete;
    void end();  // names what the forward did not (idempotent); call before backward is queued
   private:
    ParamRegistry* reg_;
  };

 private:
  void restore_grads();  // .grad back to our tensor wherever someone replaced it
  void install_zeroing_hooks();  // zero_grad_deferred's pre-hooks on the current accumulators

  at::Device device_;
  at::ScalarType dtype_;
  uint64_t init_seed_;
  std::vector<Param> params_;
  // Autograd keeps only a weak reference to a leaf's gradient accumulator: holding it here keeps
  // the grad_ready hooks alive across backwards (Megatron keeps its grad_accs for the same reason).
  std::vector<std::shared_ptr<torch::autograd::Node>> grad_accumulators_;
  std::vector<uintptr_t> hook_keys_;  // per accumulator: removed when bind runs again
  // The accumulators holding the deferred-zero pre-hooks (added once: pre-hooks cannot be removed).
  std::vector<std::shared_ptr<torch::autograd::Node>> zeroing_accumulators_;

  mh_param_gate_fn gate_fn_ = nullptr;
  void* gate_ctx_ = nullptr;
  std::vector<std::pair<size_t, size_t>> layers_;  // [first, first + count) per transformer layer
  size_t layers_end() const;                       // one past the last layer's parameters (0: none)
  std::vector<char> gated_;  // per parameter: named in the current forward scope
  bool in_scope_ = false;
  uint64_t storage_generation_ = 0;
};

// zero_grad_deferred's question before a write into param.grad(): true (once per deferral) when
// the gradient still counts as zero, so the write must store, not add. False for parameters
// never deferred.
bool take_deferred_zero(const at::Tensor& param);

// Gradient-accumulation fusion (Megatron's): a layer whose backward adds a weight's gradient
// straight into weight.grad() (the host's fp32 main gradient) returns no gradient to autograd and
// calls this instead, so the weight's grad_ready callback fires now, on the backward thread, as the
// accumulator's hook would have. The accumulator's hook then sees no incoming gradient and stays
// quiet. Only for a weight used once per backward (never a tied embedding). No-op when no
// grad_ready is bound.
void notify_grad_accumulated(const at::Tensor& weight);

// True when a grad_ready callback watches this parameter (bind() with grad_ready): its gradient
// must be complete when the layer's backward returns, so nothing may hold it back.
bool has_grad_ready(const at::Tensor& weight);

}  // namespace megahost::sdk::nn
