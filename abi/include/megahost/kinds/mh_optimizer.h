/* megahost ABI — optimizer plugins (factory "mh.optimizer/1").
 *
 * An optimizer updates parameters in place through the views the model's visit_params gives.
 * It never sees an autograd graph. The host owns schedules (learning rate, weight decay) and
 * gradient clipping and passes the current values to every step. The host passes the same
 * parameter list, in the same order, to setup, step and visit_state.
 *
 * Threading: [instance-serialized].
 */
#ifndef MEGAHOST_KINDS_MH_OPTIMIZER_H
#define MEGAHOST_KINDS_MH_OPTIMIZER_H

#include "megahost/kinds/mh_model.h"
#include "megahost/mh_plugin.h"
#include "megahost/mh_tensor.h"
#include "megahost/services/mh_config.h"

MH_EXTERN_C_BEGIN

typedef struct mh_optimizer mh_optimizer; /* plugin-owned instance */

typedef struct mh_optimizer_create_args {
  uint32_t struct_size;
  const mh_config* config; /* the [optimizer] table; valid until destroy */
  const char* instance_name;
  DLDevice device;
} mh_optimizer_create_args;

typedef struct mh_optimizer_step_args {
  uint32_t struct_size;
  double lr;           /* learning rate for this step */
  double weight_decay; /* applied to params without MH_PARAM_NO_WEIGHT_DECAY */
  int64_t iteration;   /* 1-based number of this step */
  /* Multiply every gradient by this before the update (gradient clipping's coefficient times
   * 1 / loss scale), so the host need not rescale the gradients in a pass of its own (the plugin
   * may scale them in place: the host zeroes them after the step). A plugin
   * of ABI >= 1.2 must apply it; the host rescales the gradients itself for older plugins
   * (it reads the plugin's table header). \since 1.2 */
  double grad_scale;
  /* Optional, NULL when the host wants none: model_copies[i] (NULL or a tensor of params[i]'s
   * shape in a lower precision, bf16 / fp16) receives params[i]'s updated value, rounded, in the
   * same pass as the update: the fp32 master weights' copy into the model's half-precision
   * parameters, fused. A plugin of ABI >= 1.5 must write every non-NULL entry; the host copies
   * itself for older plugins (it reads the plugin's table header). \since 1.5 */
  DLTensor* const* model_copies;
  /* Optional, NULL when the host wants none: a one-element float32 tensor on the parameters'
   * device whose value also multiplies every gradient (with grad_scale): the clipping
   * coefficient computed on the device from the gradient norm, so that the host need not wait
   * for the norm before queueing the step. Read it on the stream, never on the host. A plugin of
   * ABI >= 1.7 must apply it; the host reads the norm back and passes grad_scale alone to older
   * plugins. Present when struct_size covers it. \since 1.7 */
  const DLTensor* grad_scale_tensor;
  /* Optional, NULL when the host wants none: param_remainders[i] (NULL or a contiguous int16
   * tensor with params[i]'s element count) says that params[i].data is a bf16 tensor holding
   * the upper half of an fp32 master weight whose lower 16 bits are the remainder (Megatron's
   * store_param_remainders, 2 bytes per parameter less than an fp32 master). The fp32 value is
   *   bits = ((bf16 bits - (remainder < 0 ? 1 : 0)) << 16) | (uint16) remainder,
   * and after the update the plugin writes it back the same way: bf16 = the upper half, plus one
   * when bit 15 of the lower half is set (finite values: rounded half away from zero; a NaN
   * stores a quiet NaN and remainder 0), remainder = the lower half as int16. Exact for every
   * finite value. A plugin of ABI >= 1.8 must honour every non-NULL entry; the host keeps fp32
   * masters for older plugins. Present when struct_size covers it. \since 1.8 */
  DLTensor* const* param_remainders;
  /* \since 1.9, present when struct_size covers them: update only params[first_param,
   * first_param + num_params) (num_params == 0: all of them, as before 1.9). The host may split
   * one step into calls over consecutive ranges that cover every parameter once, in increasing
   * order, with all other arguments equal (the same params list, n and iteration): every call
   * uses the same step number, and the optimizer counts the step once, at the call whose range
   * ends at n. Lets the host update the parameters piece by piece, e.g. each piece on a side
   * stream just before the next forward needs it. A plugin of ABI >= 1.9 must honour the range;
   * the host updates all parameters in one call for older plugins. */
  size_t first_param;
  size_t num_params;
  /* \since 1.10, present when struct_size covers it: NULL, or per param the flat element index,
   * within the whole parameter, of params[i].data's first element (a distributed-optimizer shard
   * starts inside its parameter; a whole parameter starts at 0). Lets an update that depends on
   * an element's position — the stochastic rounding of bf16 moments — come out the same however
   * the parameters are sharded. Plugins may ignore it. */
  const int64_t* param_offsets;
} mh_optimizer_step_args;

typedef struct mh_optimizer_api {
  mh_table_header hdr;

  /* Accepts NULL. [main-thread] \since 1.0 */
  void(MH_ABI* destroy)(mh_optimizer* o);

  /* Allocates state for params[0..n) (views borrowed for the call; the storage they point to
   * outlives the optimizer). Called once before any step or visit_state. \since 1.0 */
  mh_error*(MH_ABI* setup)(mh_optimizer* o, const mh_param_view* params, size_t n);

  /* Updates params in place from their grads. [stream-ordered] \since 1.0 */
  mh_error*(MH_ABI* step)(mh_optimizer* o, const mh_param_view* params, size_t n,
                          const mh_optimizer_step_args* args, mh_stream stream);

  /* Visits every state tensor, named "<param name>.<state>" (e.g. ".exp_avg") plus
   * optimizer-wide ones; tensors are live storage the host may write into (checkpoint load), or
   * copies whose contents the plugin stores back when the visitor returns (a state kept in a
   * narrower, scaled form is handed out as its float32 values). Either stays valid until the
   * next step or visit_state. \since 1.0 */
  mh_error*(MH_ABI* visit_state)(mh_optimizer* o, const mh_param_view* params, size_t n,
                                 mh_tensor_visit_fn fn, void* ctx);

  /* Optional capabilities by id; NULL if unsupported. [thread-safe] \since 1.0 */
  const void*(MH_ABI* get_extension)(const mh_optimizer* o, const char* extension_id);
} mh_optimizer_api;

typedef struct mh_optimizer_factory {
  mh_table_header hdr;
  uint32_t(MH_ABI* count)(void);                               /* [thread-safe] \since 1.0 */
  const mh_plugin_descriptor*(MH_ABI* descriptor)(uint32_t i); /* [thread-safe] \since 1.0 */
  /* [main-thread] \since 1.0 */
  mh_error*(MH_ABI* create)(const char* id, const mh_host* host,
                            const mh_optimizer_create_args* args, mh_optimizer** out,
                            const mh_optimizer_api** out_api);
} mh_optimizer_factory;

/* ---- extension "mh.optimizer.state_bytes/1": the state's own size (since 1.11) ---- */
#define MH_EXT_OPTIMIZER_STATE_BYTES "mh.optimizer.state_bytes/1"
typedef struct mh_optimizer_state_bytes_ext {
  mh_table_header hdr;
  /* Bytes of memory the optimizer's state holds, as stored: fewer than the tensors visit_state
   * hands out where those are widened copies (Megatron's fp16 / fp8 moments are handed out as
   * their float32 values). Without this extension the host sums the visited tensors' sizes.
   * [main-thread] \since 1.11 */
  mh_error*(MH_ABI* state_bytes)(const mh_optimizer* o, int64_t* out);
} mh_optimizer_state_bytes_ext;

MH_EXTERN_C_END

#endif /* MEGAHOST_KINDS_MH_OPTIMIZER_H */
