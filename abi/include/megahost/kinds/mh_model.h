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
 * Parallelism (since 1.1): the model builds its layers over the host's groups (mh.dist/1) —
 * tensor, sequence and context parallel collectives happen inside forward/backward, through
 * the SDK. A parameter view shows this rank's shard (tensor_parallel_dim says which dim is
 * split). The loss a call reports covers the whole micro-batch sequence (summed over the
 * context-parallel group); the host reduces gradients afterwards: sum over "dp-cp", divided by
 * the data-parallel size, plus the tensor-parallel sum of MH_PARAM_SEQUENCE_PARALLEL grads and
 * the "embedding" sum of MH_PARAM_SHARED_EMBEDDING grads.
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
  /* \since 1.1 — the pipeline stage this instance holds (a host that fills only the 1.0 part
   * wants the whole model: read these only when struct_size covers them). With interleaving a
   * rank holds several instances, one per virtual stage. Layers keep their GLOBAL index in
   * parameter names, so a checkpoint does not depend on the layout. */
  int32_t layer_offset;     /* first (global) transformer layer held */
  int32_t num_stage_layers; /* transformer layers held; < 0 = all of them */
  uint32_t stage_flags;     /* MH_STAGE_*: which ends of the model this instance holds */
  uint32_t parallel_flags;  /* MH_PARALLEL_* */
} mh_model_create_args;

#define MH_STAGE_FIRST (1u << 0) /* holds the embeddings, takes the batch's tokens */
#define MH_STAGE_LAST (1u << 1)  /* holds the final norm and output layer, returns the loss */
#define MH_PARALLEL_SEQUENCE_PARALLEL (1u << 0) /* Megatron's --sequence-parallel */

/* Parameter flags (bit set). */
#define MH_PARAM_NO_WEIGHT_DECAY (1u << 0)    /* biases, norms: Megatron's no-wd group */
#define MH_PARAM_SEQUENCE_PARALLEL (1u << 1)  /* grads all-reduced over TP under sequence parallel */
#define MH_PARAM_SHARED_EMBEDDING (1u << 2)   /* tied across the first and last pipeline stage */
#define MH_PARAM_EXPERT (1u << 3)             /* expert-parallel: reduced over expert-DP only */
#define MH_PARAM_TP_GLU_HALVES (1u << 4)      /* \since 1.1: the tp dim holds two halves (GLU gate,
                                                 up), each split across TP ranks on its own */

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

/* Host-owned storage for one parameter (bind_storage). \since 1.1 */
typedef struct mh_param_binding {
  uint32_t struct_size;
  DLTensor* data; /* same shape and dtype as the parameter, or NULL to keep the plugin's */
  DLTensor* grad; /* same shape as the parameter's gradient, or NULL to keep the plugin's */
} mh_param_binding;

/* Called after a backward has finished accumulating the gradient of the parameter with this
 * visit index. From any thread (the autograd engine's); must not block or fail. */
typedef void(MH_ABI* mh_grad_ready_fn)(void* ctx, size_t param_index);

/* The parameter gate (set_param_gate): called by a forward before it first reads parameters
 * [first, first + count) of the visit order, on the forward's thread, with work for the forward's
 * stream queued behind it. The host makes that work wait for whatever it still has pending on
 * those parameters (an optimizer update, a parameter all-gather). Must not block longer than that
 * or fail. \since 1.9 */
typedef void(MH_ABI* mh_param_gate_fn)(void* ctx, size_t first, size_t count);

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

  /* Moves parameters and gradients onto host-owned storage (Megatron-Core's contiguous,
   * bucketed buffers): bindings[i] is for the i-th parameter of visit_params, n must equal
   * their count. The plugin copies each parameter's current value into binding.data, then
   * uses the bound storage from now on (visit_params shows it; backward accumulates into
   * binding.grad). The host keeps the storage alive until after destroy. When grad_ready is
   * not NULL it is called for every parameter once its gradient of a backward is complete
   * (so the host can start reducing a bucket while backward goes on). The call is all or
   * nothing. NULL when the plugin cannot bind (the host then copies gradients).
   * [main-thread] \since 1.1 */
  mh_error*(MH_ABI* bind_storage)(mh_model* m, const mh_param_binding* bindings, size_t n,
                                  mh_grad_ready_fn grad_ready, void* ctx);

  /* zero_grad without a pass over the gradients: each gradient counts as zero until the next
   * backward first writes it, and that first write stores instead of adding (a weight-gradient
   * GEMM with beta = 0); whatever that backward leaves unwritten it zeroes at its end. After the
   * next forward_backward (or pipeline backward) every gradient holds exactly what zero_grad and
   * that backward would have left. The host must not read or write the gradients in between.
   * NULL: unsupported (the host zeroes them). [stream-ordered] \since 1.6 */
  mh_error*(MH_ABI* zero_grad_deferred)(mh_model* m, mh_stream stream);

  /* Sets (fn != NULL) or clears the parameter gate. While set, every forward of this instance
   * (forward_backward, forward_loss, a pipeline stage's forward, logits) calls fn for every
   * parameter before its first read in that forward, and for all parameters it did not name
   * before it returns (or, with autograd, before its backward is queued): so the host may leave
   * parameter updates in flight after a step, each finished only when a forward needs it
   * (Megatron's overlap_param_gather, bucket by bucket). A parameter may be named more than once;
   * naming it early is always allowed. NULL: unsupported (the host finishes every update before
   * each forward). [main-thread] \since 1.9 */
  mh_error*(MH_ABI* set_param_gate)(mh_model* m, mh_param_gate_fn fn, void* ctx);
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

/* ---- extension "mh.model.pipeline/1": one pipeline stage, micro-batches in flight ---- */
#define MH_EXT_MODEL_PIPELINE "mh.model.pipeline/1"
typedef struct mh_pipeline_microbatch mh_pipeline_microbatch; /* plugin-owned autograd state */
typedef struct mh_model_pipeline_ext {
  mh_table_header hdr;

  /* The activation passed between stages for a micro-batch of micro_batch_size samples
   * (GPT: [s / cp (/ tp under sequence parallel), b, hidden]): up to 8 dims. [thread-safe]
   * \since 1.1 */
  mh_error*(MH_ABI* stage_io)(const mh_model* m, int64_t micro_batch_size, int64_t* shape, int32_t* ndim,
                              DLDataType* dtype);

  /* Forward of this stage over one micro-batch. `batch` is the whole micro-batch on every
   * stage (borrowed); `input` is the previous stage's output (NULL on the first stage,
   * borrowed). A non-last stage sets *out_activation to its output (owned by the caller, who
   * calls the deleter); the last stage writes *out_loss. With with_grad, *out_mb receives the
   * state the matching backward consumes; without, no graph is kept and *out_mb is NULL.
   * [stream-ordered] \since 1.1 */
  mh_error*(MH_ABI* forward)(mh_model* m, const mh_named_tensor* batch, size_t n, const DLTensor* input,
                             bool with_grad, mh_stream stream, DLManagedTensor** out_activation, mh_loss* out_loss,
                             mh_pipeline_microbatch** out_mb);

  /* Backward of a micro-batch; consumes mb (also on error). output_grad is the gradient of
   * this stage's output (borrowed; NULL on the last stage, which backpropagates
   * (loss_sum / num_tokens) * grad_scale). A non-first stage sets *out_input_grad to the
   * gradient of its input (owned by the caller). Gradients accumulate into the parameters'.
   * [stream-ordered] \since 1.1 */
  mh_error*(MH_ABI* backward)(mh_model* m, mh_pipeline_microbatch* mb, const DLTensor* output_grad,
                              double grad_scale, mh_stream stream, DLManagedTensor** out_input_grad);

  /* Drops a micro-batch without backward (an aborted schedule); accepts NULL. \since 1.1 */
  void(MH_ABI* microbatch_free)(mh_model* m, mh_pipeline_microbatch* mb);
} mh_model_pipeline_ext;

/* ---- extension "mh.model.flops/1": the model's FLOPs for the throughput line (since 1.4) ---- */
#define MH_EXT_MODEL_FLOPS "mh.model.flops/1"
typedef struct mh_model_flops_ext {
  mh_table_header hdr;
  /* Model FLOPs of training on one sample (forward + backward) of the WHOLE model, whatever
   * part of it this instance holds (pipeline stage, tensor-parallel shard): its matrix products,
   * counted as Megatron counts GPT's (2 per multiply-add, backward = 2 x forward). The host
   * multiplies by the global batch size for "throughput per GPU (TFLOP/s/GPU)"; a model without
   * this extension gets GPT's formula from its [model] sizes. [thread-safe] \since 1.4 */
  mh_error*(MH_ABI* train_flops_per_sample)(const mh_model* m, double* out);
} mh_model_flops_ext;

MH_EXTERN_C_END

#endif /* MEGAHOST_KINDS_MH_MODEL_H */
