/* megahost ABI — model plugins (factory "mh.model/1").
 *
 * Autograd graphs cannot cross DLPack, so a model instance runs its own forward and backward.
 * The core treats parameters generically through visit_params and their metadata: gradient
 * clipping, the optimizer, checkpoints (and later DP reduction, the distributed optimizer and
 * resharding) work from it alone.
 *
 * Batches are named tensors (GPT: "tokens" [b, s] int64, "labels" [b, s] int64,
 * "loss_mask" [b, s] float32, "position_ids" [b, s] int64), borrowed for the call, on the
 * model's device, ready on the given stream.
 *
 * Threading: every function of an instance is [instance-serialized] unless tagged otherwise.
 */
#ifndef MEGAHOST_KINDS_MH_MODEL_H
#define MEGAHOST_KINDS_MH_MODEL_H

#include "megahost/mh_plugin.h"
#include "megahost/mh_tensor.h"
#include "megahost/services/mh_config.h"

MH_EXTERN_C_BEGIN

typedef struct mh_model mh_model; /* plugin-owned instance */

typedef struct mh_model_create_args {
  uint32_t struct_size;
  const mh_config* config;   /* the [model] table; valid until destroy */
  const char* instance_name; /* log channel */
  DLDevice device;           /* where parameters live */
  DLDataType param_dtype;    /* parameter dtype (float32; bf16/fp16 mixed precision later) */
  int64_t padded_vocab_size; /* tokenizer vocabulary padded as Megatron pads it */
} mh_model_create_args;

/* Parameter flags (bit set). */
#define MH_PARAM_NO_WEIGHT_DECAY (1u << 0)    /* biases, norms: Megatron's no-wd group */
#define MH_PARAM_SEQUENCE_PARALLEL (1u << 1)  /* grads all-reduced over TP under sequence parallel */
#define MH_PARAM_SHARED_EMBEDDING (1u << 2)   /* tied across the first and last pipeline stage */
#define MH_PARAM_EXPERT (1u << 3)             /* expert-parallel: reduced over expert-DP only */

/* One parameter as seen by visit_params. The struct and the DLTensor structs are borrowed for
 * the callback; the storage they point to is the live parameter (and its gradient) and stays
 * valid until the model is destroyed. The host may write into `data` (checkpoint load,
 * optimizer) and into `grad` (scaling, reduction) between model calls. */
typedef struct mh_param_view {
  uint32_t struct_size;
  const char* name;    /* stable, Megatron-Core style: "decoder.layers.0.mlp.linear_fc1.weight" */
  DLTensor* data;      /* the parameter, contiguous */
  DLTensor* grad;      /* its gradient, same shape, contiguous; allocated at create */
  int32_t tensor_parallel_dim; /* dim split across tensor-parallel ranks, -1 if replicated */
  uint32_t flags;      /* MH_PARAM_* */
} mh_param_view;

typedef mh_error*(MH_ABI* mh_param_visit_fn)(void* ctx, const mh_param_view* p);

/* Loss of one forward over a micro-batch: lm loss = loss_sum / num_tokens (masked tokens). */
typedef struct mh_loss {
  uint32_t struct_size; /* set by the caller */
  double loss_sum;
  double num_tokens;
} mh_loss;

typedef struct mh_model_api {
  mh_table_header hdr;

  /* Destroys the instance; accepts NULL. [main-thread] \since 1.0 */
  void(MH_ABI* destroy)(mh_model* m);

  /* Visits every trainable parameter, always in the same order. A visitor error stops the
   * visit and is returned. \since 1.0 */
  mh_error*(MH_ABI* visit_params)(mh_model* m, mh_param_visit_fn fn, void* ctx);

  /* Switches dropout etc. between training and evaluation. \since 1.0 */
  mh_error*(MH_ABI* set_training)(mh_model* m, bool training);

  /* Sets every gradient to zero in place (storage stays where visit_params said). \since 1.0 */
  mh_error*(MH_ABI* zero_grad)(mh_model* m, mh_stream stream);

  /* Forward over a micro-batch, then backward of (loss_sum / num_tokens) * grad_scale,
   * accumulating into the gradients. Writes the loss to *out. [stream-ordered] \since 1.0 */
  mh_error*(MH_ABI* forward_backward)(mh_model* m, const mh_named_tensor* batch, size_t n,
                                      double grad_scale, mh_stream stream, mh_loss* out);

  /* Forward only, without autograd (evaluation). [stream-ordered] \since 1.0 */
  mh_error*(MH_ABI* forward_loss)(mh_model* m, const mh_named_tensor* batch, size_t n,
                                  mh_stream stream, mh_loss* out);

  /* Optional capabilities by id (MH_EXT_MODEL_*); NULL if unsupported. [thread-safe] \since 1.0 */
  const void*(MH_ABI* get_extension)(const mh_model* m, const char* extension_id);
} mh_model_api;

typedef struct mh_model_factory {
  mh_table_header hdr;
  uint32_t(MH_ABI* count)(void);                               /* [thread-safe] \since 1.0 */
  const mh_plugin_descriptor*(MH_ABI* descriptor)(uint32_t i); /* [thread-safe] \since 1.0 */
  /* Builds the model with freshly initialised parameters (seeded from mh.rng/1).
   * [main-thread] \since 1.0 */
  mh_error*(MH_ABI* create)(const char* id, const mh_host* host, const mh_model_create_args* args,
                            mh_model** out, const mh_model_api** out_api);
} mh_model_factory;

/* ---- extension "mh.model.logits/1": next-token logits, for generation and evaluation ---- */
#define MH_EXT_MODEL_LOGITS "mh.model.logits/1"
typedef struct mh_model_logits_ext {
  mh_table_header hdr;
  /* Runs a forward without autograd over tokens [b, s] int64 (borrowed) and calls on_logits
   * once with a tensor named "logits" [b, s, padded_vocab] float32, borrowed for the callback.
   * [stream-ordered] \since 1.0 */
  mh_error*(MH_ABI* logits)(mh_model* m, const DLTensor* tokens, mh_stream stream,
                            mh_tensor_visit_fn on_logits, void* ctx);
} mh_model_logits_ext;

MH_EXTERN_C_END

#endif /* MEGAHOST_KINDS_MH_MODEL_H */
