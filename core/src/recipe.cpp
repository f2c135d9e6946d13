// Recipe loading: TOML file + --set overrides, host-owned keys validated with file:line:key errors.
#include "megahost/core/recipe.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "megahost/core/error.h"
#include "megahost/core/host_services.h"

namespace megahost::core {

namespace {

KeySpec spec(const char* type, const char* default_toml, const char* doc, bool required = false) {
  KeySpec k;
  k.type = type;
  if (default_toml != nullptr) k.default_toml = default_toml;
  k.doc = doc;
  k.required = required;
  return k;
}

// Sections whose remaining keys belong to a plugin.
const char* const kPluginSections[] = {"model", "tokenizer", "data", "optimizer", "checkpoint"};

bool is_plugin_section(const std::string& s) {
  for (const char* p : kPluginSections)
    if (s == p) return true;
  return false;
}

}  // namespace

const std::map<std::string, Schema>& host_schema() {
  static const std::map<std::string, Schema> schema = {
      {"model", {{"plugin", spec("string", "'gpt'", "model plugin id")}}},
      {"tokenizer", {{"plugin", spec("string", "'gpt2-bpe'", "tokenizer plugin id or Megatron --tokenizer-type")}}},
      {"data",
       {{"plugin", spec("string", "'mmap-indexed'", "dataset format plugin id")},
        {"data_path", spec("any", nullptr, "prefix, or [weight, prefix, ...] to blend (or the per-split paths)")},
        {"train_data_path", spec("any", nullptr, "train data only: prefix or [weight, prefix, ...]; split not applied")},
        {"valid_data_path", spec("any", nullptr, "validation data only, as train_data_path")},
        {"test_data_path", spec("any", nullptr, "test data only, as train_data_path")},
        {"data_cache_path", spec("path", nullptr, "folder of the cached GPT indices (default <prefix>/cache/GPTDataset_indices)")},
        {"split", spec("string", "'969,30,1'", "train,valid,test proportions of each dataset")},
        {"mock_data", spec("bool", "false", "Megatron's --mock-data: synthetic GPT documents (MockGPTDataset), no corpus; data paths unread")},
        {"eod_mask_loss", spec("bool", "false", "mask the loss at end-of-document tokens")},
        {"dataset", spec("string", "'auto'", "gpt | bert (Megatron's BERT masked samples) | t5 (span corruption) | auto: the [model] plugin's kind")},
        {"mask_prob", spec("float", "0.15", "BERT / T5: share of tokens masked (Megatron's --mask-prob)")},
        {"short_seq_prob", spec("float", "0.1", "BERT / T5: chance a sample targets a random shorter length (--short-seq-prob)")}}},
      {"optimizer",
       {{"plugin", spec("string", "'adamw'", "optimizer plugin id")},
        {"lr", spec("float", nullptr, "peak learning rate", true)},
        {"min_lr", spec("float", "0.0", "learning rate at the end of decay")},
        {"weight_decay", spec("float", "0.01", "decoupled weight decay (not on biases and norms)")},
        {"clip_grad", spec("float", "1.0", "gradient clipping by global L2 norm; 0 disables")},
        {"use_precision_aware_optimizer",
         spec("bool", "false", "Megatron's --use-precision-aware-optimizer: with bf16, store_param_remainders applies")},
        {"store_param_remainders",
         spec("bool", "true", "with use_precision_aware_optimizer and bf16: each fp32 master kept as the bf16 parameter "
                              "+ an int16 remainder (exact; 2 bytes per parameter less)")},
        {"main_grads_dtype",
         spec("string", "'fp32'", "fp32 | bf16: the main gradients' dtype (Megatron's --main-grads-dtype; bf16 needs "
                                  "precision = bf16 and use_precision_aware_optimizer)")}}},
      {"checkpoint",
       {{"plugin", spec("string", "'megahost-tensors'", "checkpoint format plugin id")},
        {"save", spec("path", nullptr, "folder to save checkpoints to")},
        {"load", spec("path", nullptr, "folder to resume from (latest_checkpointed_iteration.txt)")},
        {"save_interval", spec("int", "0", "save every N iterations (0: only at the end)")},
        {"no_load_optim", spec("bool", "false", "do not load optimizer state")},
        {"no_load_rng", spec("bool", "false", "do not load RNG state")},
        {"finetune", spec("bool", "false", "load weights only from `load`: iteration 0, fresh optimizer, scheduler, RNG")},
        {"keep_last_n", spec("int", "0", "keep only the newest N iter_* folders after a save (0: keep all)")},
        {"async_save", spec("bool", "false", "write checkpoints in a background thread (Megatron's --async-save)")},
        {"ckpt_convert_format", spec("string", nullptr, "load, write the checkpoint again through this format plugin "
                                                        "into ckpt_convert_save, stop (Megatron's --ckpt-convert-format)")},
        {"ckpt_convert_save", spec("path", nullptr, "folder the converted checkpoint goes to (--ckpt-convert-save)")}}},
      {"training",
       {{"micro_batch_size", spec("int", "1", "samples per micro-batch")},
        {"global_batch_size", spec("int", nullptr, "samples per iteration (default micro_batch_size)")},
        {"train_iters", spec("int", nullptr, "number of iterations to train", true)},
        {"seed", spec("int", "1234", "random seed")},
        {"lr_decay_style", spec("string", "'linear'", "constant | linear | cosine")},
        {"lr_decay_iters", spec("int", nullptr, "iterations to decay over (default train_iters)")},
        {"lr_warmup_iters", spec("int", "0", "linear warmup iterations")},
        {"lr_warmup_fraction", spec("float", nullptr, "warmup as a fraction of lr_decay_iters")},
        {"lr_warmup_init", spec("float", "0.0", "learning rate at the start of warmup")},
        {"eval_interval", spec("int", "1000", "evaluate every N iterations")},
        {"eval_iters", spec("int", "100", "iterations per evaluation")},
        {"exit_interval", spec("int", "0", "save and exit when iteration % N == 0 (0: never)")},
        {"device", spec("string", "'auto'", "cpu | cuda | auto")},
        {"num_threads", spec("int", "0", "CPU threads for libtorch (0: all cores)")},
        {"precision", spec("string", "'fp32'", "fp32 | bf16 | fp16: parameter and compute dtype (fp32 main grads and masters)")},
        {"bf16", spec("bool", "false", "Megatron's --bf16: same as precision = 'bf16'")},
        {"fp16", spec("bool", "false", "Megatron's --fp16: same as precision = 'fp16'")},
        {"loss_scale", spec("float", "0.0", "fp16: a constant loss scale (0: dynamic loss scaling)")},
        {"initial_loss_scale", spec("float", "4294967296.0", "fp16 dynamic scaling: the first scale (2^32)")},
        {"min_loss_scale", spec("float", "1.0", "fp16 dynamic scaling: the scale never goes below this")},
        {"loss_scale_window", spec("int", "1000", "fp16 dynamic scaling: double the scale after this many clean steps")},
        {"hysteresis", spec("int", "2", "fp16 dynamic scaling: overflows tolerated before the scale halves")}}},
      {"logging",
       {{"log_interval", spec("int", "100", "print a line every N iterations")},
        {"metrics_file", spec("path", nullptr, "JSON lines with the logged figures")},
        {"log_level", spec("string", "'info'", "trace | debug | info | warn | error")}}},
      {"parallel",
       {{"tensor_model_parallel_size", spec("int", "1", "tensor-parallel ranks")},
        {"pipeline_model_parallel_size", spec("int", "1", "pipeline stages")},
        {"context_parallel_size", spec("int", "1", "context-parallel ranks")},
        {"expert_model_parallel_size", spec("int", "1", "expert-parallel ranks")},
        {"sequence_parallel", spec("bool", "false", "sequence parallelism (needs TP > 1)")},
        {"use_distributed_optimizer", spec("bool", "false", "shard optimizer state over data parallel")},
        {"num_layers_per_virtual_pipeline_stage",
         spec("int", "0", "layers per virtual stage: interleaved 1F1B (0: plain 1F1B)")},
        {"overlap_grad_reduce", spec("bool", "false", "reduce gradient buckets during backward")},
        {"overlap_param_gather", spec("bool", "false", "all-gather updated parameters asynchronously (distributed optimizer)")},
        {"overlap_optimizer_step",
         spec("bool", "false", "run the optimizer step in pieces under the next forward (not with the distributed optimizer)")},
        {"ddp_bucket_size", spec("int", "0", "parameters per gradient bucket (0: Megatron's max(40M, 1M x dp))")},
        {"use_tp_pp_dp_mapping", spec("bool", "false", "rank order tp-pp-dp instead of tp-cp-ep-dp-pp")},
        {"distributed_timeout_minutes", spec("int", "10", "timeout of every collective")},
        {"distributed_backend", spec("string", "'auto'", "nccl | gloo | auto (nccl on CUDA, gloo on CPU)")},
        {"make_vocab_size_divisible_by", spec("int", "128", "pad the vocabulary to a multiple of this x TP")}}},
  };
  return schema;
}

std::vector<std::string> host_keys(const std::string& section) {
  std::vector<std::string> out;
  auto it = host_schema().find(section);
  if (it != host_schema().end())
    for (const auto& [k, _] : it->second) out.push_back(k);
  return out;
}

namespace {

void apply_override(toml::table& root, const std::string& ov) {
  const size_t eq = ov.find('=');
  MH_CORE_CHECK(eq != std::string::npos && eq > 0, "--set '", ov,
                "': expected section.key=value\nHINT: e.g. --set training.train_iters=100");
  const std::string path = ov.substr(0, eq);
  const std::string value = ov.substr(eq + 1);
  const size_t dot = path.find('.');
  MH_CORE_CHECK(dot != std::string::npos, "--set '", ov,
                "': the key must name its section, e.g. training.train_iters");
  const std::string sec = path.substr(0, dot), key = path.substr(dot + 1);
  MH_CORE_CHECK(host_schema().count(sec) != 0, "--set '", ov, "': unknown section [", sec, "]",
                [&] {
                  std::vector<std::string> names;
                  for (const auto& [n, _] : host_schema()) names.push_back(n);
                  const std::string near = closest_key(sec, names);
                  return near.empty() ? std::string() : cat("\nHINT: did you mean '", near, "'?");
                }());
  // The value is TOML when it parses as TOML (numbers, bools, arrays, quoted strings), else a bare string.
  toml::table holder;
  try {
    holder = toml::parse("v = " + value, std::string_view("--set"));
  } catch (const toml::parse_error&) {
    holder = toml::table{};
    holder.insert("v", value);
  }
  if (!root.contains(sec)) root.insert(sec, toml::table{});
  toml::table* t = root[sec].as_table();
  MH_CORE_CHECK(t != nullptr, "--set '", ov, "': [", sec, "] is not a table in the recipe");
  // Parsed under the source name "--set", so errors about this key say where it came from.
  t->insert_or_assign(key, *holder.get("v"));
}

}  // namespace

Recipe parse_recipe(const std::string& text, const std::string& label, const std::vector<std::string>& overrides) {
  // Sections alias into this one parsed root: toml++ drops source positions when copying a node.
  auto root_ptr = std::make_shared<toml::table>();
  toml::table& root = *root_ptr;
  try {
    root = toml::parse(text, label);
  } catch (const toml::parse_error& e) {
    throw Error(cat(label, ":", e.source().begin.line, ":", e.source().begin.column, ": ", e.description(),
                    "\nHINT: check the TOML syntax at that position"));
  }
  for (const auto& ov : overrides) apply_override(root, ov);

  Recipe r;
  r.path = label;
  std::vector<std::string> section_names;
  for (const auto& [n, _] : host_schema()) section_names.push_back(n);
  section_names.emplace_back("plugin_path");
  for (const auto& [k, v] : root) {
    const std::string key(k.str());
    if (key == "plugin_path") {
      auto add = [&](const toml::node& n) {
        MH_CORE_CHECK(n.is_string(), where(n, label), ": plugin_path must be a string or an array of strings");
        r.plugin_path.push_back(std::string(*n.value<std::string>()));
      };
      if (const auto* a = v.as_array()) {
        for (const auto& e : *a) add(e);
      } else {
        add(v);
      }
      continue;
    }
    if (host_schema().count(key) == 0) {
      const std::string near = closest_key(key, section_names);
      throw Error(cat(where(v, label), ": unknown section or key '", key, "'",
                      near.empty() ? "\nHINT: sections are [model] [tokenizer] [data] [optimizer] [checkpoint] "
                                     "[training] [logging] [parallel]"
                                   : cat("\nHINT: did you mean '", near, "'?")));
    }
    MH_CORE_CHECK(v.is_table(), where(v, label), ": '", key, "' must be a table ([", key, "])");
  }
  for (const auto& [name, schema] : host_schema()) {
    ConfigSection s;
    s.file = label;
    s.name = name;
    if (!root.contains(name)) root.insert(name, toml::table{});
    s.table = std::shared_ptr<toml::table>(root_ptr, root.get_as<toml::table>(name));
    if (is_plugin_section(name)) {
      // Plugin sections: check only the host's keys here; the rest belongs to the plugin.
      Schema host_only = schema;
      std::vector<std::string> plugin_keys;
      for (const auto& [k, _] : *s.table)
        if (schema.count(std::string(k.str())) == 0) plugin_keys.emplace_back(k.str());
      apply_schema(host_only, s, plugin_keys, cat("[", name, "]"));
    } else {
      apply_schema(schema, s, {}, cat("[", name, "]"));
    }
    r.sections[name] = std::move(s);
  }

  // Combinations the host can judge now.
  const int64_t mbs = r.get_int("training", "micro_batch_size");
  if (!r.has("training", "global_batch_size")) r.section("training").table->insert("global_batch_size", mbs);
  const int64_t gbs = r.get_int("training", "global_batch_size");
  MH_CORE_CHECK(mbs > 0, r.where("training", "micro_batch_size"), ": training.micro_batch_size must be > 0");
  MH_CORE_CHECK(gbs > 0 && gbs % mbs == 0, r.where("training", "global_batch_size"),
                ": training.global_batch_size (", gbs, ") must be a positive multiple of micro_batch_size (", mbs,
                ")\nHINT: gradient accumulation runs global_batch_size / micro_batch_size micro-batches");
  MH_CORE_CHECK(r.get_int("training", "train_iters") > 0, r.where("training", "train_iters"),
                ": training.train_iters must be > 0");
  const std::string style = r.get_string("training", "lr_decay_style");
  MH_CORE_CHECK(style == "constant" || style == "linear" || style == "cosine", r.where("training", "lr_decay_style"),
                ": training.lr_decay_style '", style, "' is not one of constant, linear, cosine");
  if (r.has("training", "lr_warmup_fraction"))
    MH_CORE_CHECK(r.get_int("training", "lr_warmup_iters") == 0, r.where("training", "lr_warmup_fraction"),
                  ": set lr_warmup_iters or lr_warmup_fraction, not both (as in Megatron)");
  MH_CORE_CHECK(r.get_int("training", "eval_interval") > 0, r.where("training", "eval_interval"),
                ": training.eval_interval must be > 0");
  const std::string device = r.get_string("training", "device");
  MH_CORE_CHECK(device == "cpu" || device == "cuda" || device == "auto", r.where("training", "device"),
                ": training.device must be cpu, cuda or auto");
  const std::string level = r.get_string("logging", "log_level");
  MH_CORE_CHECK(level == "trace" || level == "debug" || level == "info" || level == "warn" || level == "error" ||
                    level == "off",
                r.where("logging", "log_level"), ": logging.log_level '", level,
                "' is not one of trace, debug, info, warn, error, off");
  for (const char* k : {"tensor_model_parallel_size", "pipeline_model_parallel_size", "context_parallel_size",
                        "expert_model_parallel_size", "distributed_timeout_minutes"})
    MH_CORE_CHECK(r.get_int("parallel", k) >= 1, r.where("parallel", k), ": parallel.", k, " must be >= 1");
  MH_CORE_CHECK(r.get_int("parallel", "expert_model_parallel_size") == 1, r.where("parallel", "expert_model_parallel_size"),
                ": expert_model_parallel_size > 1 needs a mixture-of-experts model, and none is available yet\n"
                "HINT: use 1 (the expert rank grid exists; the MoE model plugin is its own issue)");
  // Megatron: "Disabling sequence parallelism because tensor model parallelism is disabled" is a
  // silent fix there; here it is an error, so a recipe says what it runs.
  MH_CORE_CHECK(!r.get_bool("parallel", "sequence_parallel") || r.get_int("parallel", "tensor_model_parallel_size") > 1,
                r.where("parallel", "sequence_parallel"),
                ": sequence_parallel needs tensor_model_parallel_size > 1\nHINT: set tensor_model_parallel_size = 2 "
                "(or more), or drop sequence_parallel");
  MH_CORE_CHECK(r.get_int("parallel", "num_layers_per_virtual_pipeline_stage") >= 0,
                r.where("parallel", "num_layers_per_virtual_pipeline_stage"), ": must be >= 0");
  MH_CORE_CHECK(r.get_int("parallel", "num_layers_per_virtual_pipeline_stage") == 0 ||
                    r.get_int("parallel", "pipeline_model_parallel_size") > 1,
                r.where("parallel", "num_layers_per_virtual_pipeline_stage"),
                ": the interleaved schedule needs pipeline_model_parallel_size > 1\nHINT: remove "
                "num_layers_per_virtual_pipeline_stage or raise pipeline_model_parallel_size");
  MH_CORE_CHECK(!r.get_bool("parallel", "overlap_param_gather") || r.get_bool("parallel", "use_distributed_optimizer"),
                r.where("parallel", "overlap_param_gather"),
                ": overlap_param_gather needs use_distributed_optimizer = true (as in Megatron)");
  MH_CORE_CHECK(!r.get_bool("parallel", "overlap_optimizer_step") || !r.get_bool("parallel", "use_distributed_optimizer"),
                r.where("parallel", "overlap_optimizer_step"),
                ": overlap_optimizer_step does not apply with use_distributed_optimizer\nHINT: set overlap_param_gather = "
                "true: the distributed optimizer hides its parameter all-gather under the forward instead");
  {
    const std::string be = r.get_string("parallel", "distributed_backend");
    MH_CORE_CHECK(be == "nccl" || be == "gloo" || be == "auto", r.where("parallel", "distributed_backend"),
                  ": parallel.distributed_backend '", be, "' is not one of nccl, gloo, auto");
  }
  return r;
}

Recipe load_recipe(const std::string& path, const std::vector<std::string>& overrides) {
  std::ifstream in(path, std::ios::binary);
  MH_CORE_CHECK(in.good(), path, ": cannot open recipe\nHINT: check the path (relative paths are from the current "
                "folder)");
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_recipe(ss.str(), path, overrides);
}

int64_t Recipe::get_int(const std::string& sec, const std::string& key) const {
  auto v = section(sec).table->get(key);
  MH_CORE_CHECK(v != nullptr && v->is_integer(), path, ": [", sec, "] ", key, " is not set");
  return *v->value<int64_t>();
}
double Recipe::get_float(const std::string& sec, const std::string& key) const {
  auto v = section(sec).table->get(key);
  MH_CORE_CHECK(v != nullptr && (v->is_number()), path, ": [", sec, "] ", key, " is not set");
  return *v->value<double>();
}
bool Recipe::get_bool(const std::string& sec, const std::string& key) const {
  auto v = section(sec).table->get(key);
  MH_CORE_CHECK(v != nullptr && v->is_boolean(), path, ": [", sec, "] ", key, " is not set");
  return *v->value<bool>();
}
std::string Recipe::get_string(const std::string& sec, const std::string& key) const {
  auto v = section(sec).table->get(key);
  MH_CORE_CHECK(v != nullptr && v->is_string(), path, ": [", sec, "] ", key, " is not set");
  return *v->value<std::string>();
}
bool Recipe::has(const std::string& sec, const std::string& key) const {
  return section(sec).table->contains(key);
}
std::string Recipe::where(const std::string& sec, const std::string& key) const {
  auto v = section(sec).table->get(key);
  return v == nullptr ? path : core::where(*v, path);
}

}  // namespace megahost::core
