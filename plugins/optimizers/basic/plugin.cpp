// Basic optimizers — the optimizer plugin library: descriptors ("adamw", "sgd"), the factory
// and the ABI table. Every entry point catches: no exception crosses the C ABI, and torch's
// errors arrive without their C++ backtrace.
#include <c10/util/Exception.h>

#include <cstring>
#include <memory>

#include "algorithms.h"
#include "megahost/sdk/host.h"
#include "megahost/sdk/plugin.h"

namespace optim = megahost::optim;
using megahost::sdk::Config;
using megahost::sdk::Error;

struct mh_optimizer {
  const mh_host* host;
  std::unique_ptr<optim::Optimizer> impl;
};

namespace {

const char* const kAdamWAliases[] = {"adam", nullptr};  // Megatron's --optimizer adam is AdamW
const mh_plugin_descriptor kAdamW = {
    sizeof(mh_plugin_descriptor),
    "adamw",
    "AdamW",
    "megahost",
    "0.1.0",
    "Adam with decoupled weight decay (torch.optim.AdamW / apex FusedAdam adam_w_mode)",
    kAdamWAliases,
    R"json({"adam_beta1": {"type": "float", "default": 0.9, "doc": "first moment decay (Megatron --adam-beta1)"},
 "adam_beta2": {"type": "float", "default": 0.999, "doc": "second moment decay (Megatron --adam-beta2)"},
 "adam_eps": {"type": "float", "default": 1e-8, "doc": "added to the denominator (Megatron --adam-eps)"},
 "exp_avg_dtype": {"type": "string", "default": "fp32", "doc": "fp32 | bf16 | fp16 | fp8: the first moment's storage (Megatron --exp-avg-dtype; all but fp32 need use_precision_aware_optimizer; updated in fp32; bf16 stored rounded stochastically, fp16 and fp8 (E4M3) scaled per tensor as Transformer Engine's FusedAdam and rounded to nearest)"},
 "exp_avg_sq_dtype": {"type": "string", "default": "fp32", "doc": "fp32 | bf16 | fp16 | fp8: the second moment's storage (Megatron --exp-avg-sq-dtype), as exp_avg_dtype"}})json",
};

const mh_plugin_descriptor kSGD = {
    sizeof(mh_plugin_descriptor),
    "sgd",
    "SGD",
    "megahost",
    "0.1.0",
    "SGD with momentum and L2 weight decay (torch.optim.SGD)",
    nullptr,
    R"json({"sgd_momentum": {"type": "float", "default": 0.9, "doc": "momentum factor (Megatron --sgd-momentum)"}})json",
};

const mh_plugin_descriptor* const kDescriptors[] = {&kAdamW, &kSGD};

// Runs body, turning c10::Error into an sdk::Error without the backtrace.
template <typename F>
void run_torch(F&& body) {
  try {
    body();
  } catch (const c10::Error& e) {
    throw Error(MH_ERR_INTERNAL, e.what_without_backtrace());
  }
}

void MH_ABI destroy(mh_optimizer* o) { delete o; }

mh_error* MH_ABI setup(mh_optimizer* o, const mh_param_view* params, size_t n) {
  MH_SDK_TRY {
    run_torch([&] { o->impl->setup(params, n); });
    return nullptr;
  }
  MH_SDK_CATCH(o->host)
}

mh_error* MH_ABI step(mh_optimizer* o, const mh_param_view* params, size_t n, const mh_optimizer_step_args* args,
                      mh_stream /*stream*/) {
  // The update runs on torch's current stream: on CUDA the host passes the default stream
  // (handle NULL) for now; a stream guard belongs in sdk/compat.h once non-default streams are used.
  MH_SDK_TRY {
    MH_CHECK(args != nullptr, MH_ERR_INVALID_ARG, "optimizer step: null args");
    run_torch([&] { o->impl->step(params, n, *args); });
    return nullptr;
  }
  MH_SDK_CATCH(o->host)
}

mh_error* MH_ABI visit_state(mh_optimizer* o, const mh_param_view* params, size_t n, mh_tensor_visit_fn fn,
                             void* ctx) {
  MH_SDK_TRY {
    MH_CHECK(fn != nullptr, MH_ERR_INVALID_ARG, "optimizer visit_state: null visitor");
    run_torch([&] { o->impl->visit_state(params, n, fn, ctx); });
    return nullptr;
  }
  MH_SDK_CATCH(o->host)
}

mh_error* MH_ABI state_bytes(const mh_optimizer* o, int64_t* out) {
  MH_SDK_TRY {
    MH_CHECK(out != nullptr, MH_ERR_INVALID_ARG, "optimizer state_bytes: null out");
    *out = o->impl->state_bytes();
    return nullptr;
  }
  MH_SDK_CATCH(o->host)
}

const mh_optimizer_state_bytes_ext kStateBytes = {MH_TABLE_HEADER(mh_optimizer_state_bytes_ext), state_bytes};

const void* MH_ABI get_extension(const mh_optimizer*, const char* id) {
  return id != nullptr && std::strcmp(id, MH_EXT_OPTIMIZER_STATE_BYTES) == 0 ? &kStateBytes : nullptr;
}

const mh_optimizer_api kApi = {MH_TABLE_HEADER(mh_optimizer_api), destroy, setup, step, visit_state, get_extension};

// Reads a float key (defaults when the host gave no config) and checks lo <= v < hi.
double read_key(const Config* cfg, const char* key, double fallback, double lo, double hi, const char* hint) {
  const double v = cfg != nullptr ? cfg->get_float(key, fallback) : fallback;
  if (!(v >= lo && v < hi)) {
    const std::string msg = megahost::sdk::str_cat(key, " = ", v, " is outside [", lo, ", ", hi, ")");
    if (cfg != nullptr) throw cfg->error(key, msg, hint);
    throw Error(MH_ERR_INVALID_ARG, msg + ". HINT: " + hint);
  }
  return v;
}

// Reads a moment's storage dtype (Megatron's --exp-avg-dtype / --exp-avg-sq-dtype names): fp32,
// bf16, fp16 or fp8 (E4M3, kept as uint8 bits); all but fp32 need use_precision_aware_optimizer,
// as in Megatron.
at::ScalarType read_state_dtype(const Config* cfg, const char* key) {
  const std::string v = cfg != nullptr ? cfg->get_string(key, "fp32") : "fp32";
  at::ScalarType dtype;
  if (v == "fp32" || v == "float32")
    return at::kFloat;
  else if (v == "bf16" || v == "bfloat16")
    dtype = at::kBFloat16;
  else if (v == "fp16" || v == "float16")
    dtype = at::kHalf;
  else if (v == "fp8")
    dtype = at::kByte;
  else
    throw cfg->error(key, megahost::sdk::str_cat(key, " = '", v, "' is not one of fp32, bf16, fp16, fp8"),
                     "use fp32 (the default), or bf16, fp16 or fp8 with use_precision_aware_optimizer = true");
  if (!cfg->get_bool("use_precision_aware_optimizer", false))
    throw cfg->error(key, megahost::sdk::str_cat(key, " = '", v, "' needs use_precision_aware_optimizer = true"),
                     "add use_precision_aware_optimizer = true to [optimizer] (as Megatron's --exp-avg-dtype needs "
                     "--use-precision-aware-optimizer)");
  return dtype;
}

std::unique_ptr<optim::Optimizer> make(int which, const mh_host* host, const Config* cfg) {
  constexpr double kInf = 1e300;
  if (which == 0) {
    const double beta1 = read_key(cfg, "adam_beta1", 0.9, 0, 1, "typical values are 0.9");
    const double beta2 = read_key(cfg, "adam_beta2", 0.999, 0, 1, "typical values are 0.95 to 0.999");
    const double eps = read_key(cfg, "adam_eps", 1e-8, 0, kInf, "typical values are 1e-8");
    const at::ScalarType exp_avg_sq_dtype = read_state_dtype(cfg, "exp_avg_sq_dtype");
    if (exp_avg_sq_dtype == at::kByte)  // allowed, as in Megatron, but worth knowing before a day is lost
      megahost::sdk::log(host, MH_LOG_WARN, "optimizer.adamw",
                         "exp_avg_sq_dtype = 'fp8': E4M3 holds about five decades below each tensor's largest second "
                         "moment, and an element whose second moment rounds to zero while its first does not steps by "
                         "m / eps; exp_avg_sq_dtype = 'fp16' or 'bf16' avoids it (docs/recipe.md)");
    return std::make_unique<optim::AdamW>(host, beta1, beta2, eps, read_state_dtype(cfg, "exp_avg_dtype"),
                                          exp_avg_sq_dtype);
  }
  const double momentum = read_key(cfg, "sgd_momentum", 0.9, 0, kInf, "typical values are 0 to 0.99");
  return std::make_unique<optim::SGD>(host, momentum);
}

uint32_t MH_ABI count() { return 2; }
const mh_plugin_descriptor* MH_ABI descriptor(uint32_t i) { return i < 2 ? kDescriptors[i] : nullptr; }

mh_error* MH_ABI create(const char* id, const mh_host* host, const mh_optimizer_create_args* args, mh_optimizer** out,
                        const mh_optimizer_api** out_api) {
  MH_SDK_TRY {
    const int which = id == nullptr ? -1 : megahost::sdk::find_descriptor(kDescriptors, 2, id);
    MH_CHECK(which >= 0, MH_ERR_NOT_FOUND, "optimizer '", id ? id : "(null)",
             "' is not in this library. HINT: use \"adamw\" (alias \"adam\") or \"sgd\"");
    MH_CHECK(out != nullptr && out_api != nullptr, MH_ERR_INVALID_ARG, "optimizer create: null out");
    std::unique_ptr<Config> cfg;
    if (args != nullptr && args->config != nullptr) cfg = std::make_unique<Config>(host, args->config);
    auto o = std::make_unique<mh_optimizer>();
    o->host = host;
    run_torch([&] { o->impl = make(which, host, cfg.get()); });
    *out = o.release();
    *out_api = &kApi;
    return nullptr;
  }
  MH_SDK_CATCH(host)
}

const mh_optimizer_factory kFactory = {MH_TABLE_HEADER(mh_optimizer_factory), count, descriptor, create};

const void* get_factory(const char* id) { return std::strcmp(id, MH_FACTORY_OPTIMIZER) == 0 ? &kFactory : nullptr; }

}  // namespace

MH_SDK_PLUGIN_ENTRY(get_factory)
