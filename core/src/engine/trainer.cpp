// The training loop, Megatron's semantics (docs/architecture.md §engine):
//   for iteration in (resume + 1) .. train_iters:
//     lr = schedule(consumed samples before this step)
//     for each of global/micro micro-batches: forward + backward of loss / num_micro_batches
//     clip grads by global norm; optimizer step; zero grads
//     log every log_interval; evaluate every eval_interval; save every save_interval
#include "megahost/core/engine/trainer.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <ATen/core/grad_mode.h>  // at::NoGradGuard: ATen.h no longer brings it on libtorch 2.x
#include <c10/core/Event.h>
#include <c10/core/StreamGuard.h>
#include <c10/core/impl/DeviceGuardImplInterface.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <nlohmann/json.hpp>
#include <sstream>

#include "megahost/core/engine/batches.h"
#include "megahost/core/engine/checkpoint_convert.h"
#include "megahost/core/engine/checkpointing.h"
#include "megahost/core/engine/data_parallel.h"
#include "megahost/core/engine/lr_schedule.h"
#include "megahost/core/engine/mixed_precision.h"
#include "megahost/core/engine/parallel_setup.h"
#include "megahost/core/engine/pipeline_layout.h"
#include "megahost/core/engine/readback.h"
#include "megahost/core/engine/schedules.h"
#include "megahost/core/parallel/world.h"
#include "megahost/core/engine/samples.h"
#include "megahost/core/error.h"
#include "megahost/core/files.h"
#include "megahost/core/host_services.h"
#include "megahost/core/instances.h"
#include "megahost/sdk/torch_interop.h"

namespace megahost::core {

namespace {

std::atomic<int> g_stop_signal{0};
extern "C" void on_stop_signal(int sig) { g_stop_signal.store(sig); }

using Clock = std::chrono::steady_clock;

// Megatron pads the vocabulary to a multiple of make_vocab_size_divisible_by x TP.
int64_t padded_vocab_size(int64_t vocab, int64_t divisible_by, int64_t tp) {
  const int64_t multiple = divisible_by * tp;
  return ((vocab + multiple - 1) / multiple) * multiple;
}

// Megatron's model FLOPs per iteration (FORMATS.md §5), 0 when the model table lacks the sizes.
double model_flops_per_iteration(const Recipe& r, int64_t gbs, int64_t vocab) {
  const auto& m = *r.section("model").table;
  auto get = [&](const char* k) -> double {
    auto v = m.get(k);
    return v && v->is_integer() ? static_cast<double>(*v->value<int64_t>()) : 0.0;
  };
  const double l = get("num_layers"), h = get("hidden_size"), s = get("seq_length");
  if (l == 0 || h == 0 || s == 0) return 0;
  return 72.0 * gbs * s * l * h * h * (1.0 + s / (6.0 * h) + vocab / (12.0 * l * h));
}

class MetricsFile {
 public:
  explicit MetricsFile(const std::string& path) {
    if (path.empty()) return;
    const auto parent = std::filesystem::path(path).parent_path();
    if (!parent.empty()) std::filesystem::create_directories(parent);
    out_.open(path, std::ios::app);
    MH_CORE_CHECK(out_.good(), path, ": cannot open metrics_file for writing\nHINT: check the folder and permissions");
  }
  void write(const nlohmann::json& j) {
    if (!out_.is_open()) return;
    out_ << j.dump() << "\n";
    out_.flush();
  }

 private:
  std::ofstream out_;
};

void print_line(const std::string& s) {
  std::fwrite(s.data(), 1, s.size(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
}

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), f, v);
  return buf;
}

at::Device pick_device(const std::string& want) {
  if (want == "cuda" || (want == "auto" && at::hasCUDA())) {
    MH_CORE_CHECK(at::hasCUDA(), "training.device = cuda but this libtorch has no CUDA device\nHINT: use cpu, or "
                  "build against a CUDA libtorch");
    const int local_rank = run_facts().local_rank;
    const size_t gpus = at::getNumGPUs();
    MH_CORE_CHECK(static_cast<size_t>(local_rank) < gpus, "training.device = cuda: local rank ", local_rank,
                  " needs CUDA device ", local_rank, " but this machine has ", gpus, " CUDA device(s)",
                  "\nHINT: launch at most ", gpus, " processes per node (--nproc-per-node)");
    return at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(local_rank));
  }
  return at::Device(at::kCPU);
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct Components {
  std::unique_ptr<Tokenizer> tokenizer;
  std::unique_ptr<Model> model;
  int64_t vocab = 0, padded_vocab = 0, seq_length = 0;
  at::Device device{at::kCPU};
};

// The training sample length: [model] seq_length (Megatron's --seq-length), or T5's
// encoder_seq_length (Megatron sets --seq-length to --encoder-seq-length).
int64_t model_seq_length(const Recipe& r) {
  auto seq = r.section("model").table->get("seq_length");
  if (seq == nullptr) seq = r.section("model").table->get("encoder_seq_length");
  MH_CORE_CHECK(seq != nullptr && seq->is_integer() && *seq->value<int64_t>() > 0, r.path,
                ": [model] needs seq_length (the training sample length)",
                "\nHINT: add seq_length = 1024 (or your length) to [model]");
  return *seq->value<int64_t>();
}

Components build_model_and_tokenizer(const Recipe& r, const PluginRegistry& reg) {
  Components c;
  c.device = pick_device(r.get_string("training", "device"));
  c.tokenizer = reg.create_tokenizer(r.get_string("tokenizer", "plugin"), r.section("tokenizer"),
                                     host_keys("tokenizer"));
  c.vocab = c.tokenizer->vocab_size();
  c.padded_vocab = padded_vocab_size(c.vocab, r.get_int("parallel", "make_vocab_size_divisible_by"),
                                     r.get_int("parallel", "tensor_model_parallel_size"));
  ModelOptions mo;
  mo.device = sdk::to_dl_device(c.device);
  mo.param_dtype = sdk::to_dl_dtype(param_dtype(read_precision(r)));
  mo.padded_vocab_size = c.padded_vocab;
  c.model = create_model(reg, r.get_string("model", "plugin"), r.section("model"), mo, host_keys("model"));
  c.seq_length = model_seq_length(r);
  return c;
}

// overlap_optimizer_step on CUDA: the training loop queues on a high-priority stream, so the
// block scheduler prefers the forward's kernels over the optimizer pieces on the (low-priority)
// side stream, which fill what the forward leaves. Joined with the previous stream both ways.
// MEGAHOST_FORWARD_HIGH_PRIORITY=0: stay on the current stream (for comparison).
class ForwardStream {
 public:
  ForwardStream(const at::Device& device, bool wanted) {
    const char* env = std::getenv("MEGAHOST_FORWARD_HIGH_PRIORITY");
    if (!device.is_cuda() || !wanted || (env != nullptr && std::string(env) == "0")) return;
    const auto* impl = c10::impl::getDeviceGuardImpl(device.type());
    const c10::Stream before = impl->getStream(device);
    const c10::Stream high = impl->getStreamFromGlobalPool(device, /*isHighPriority=*/true);
    join(before, high);
    guard_.emplace(high);
  }
  ~ForwardStream() {
    if (!guard_) return;
    const c10::Stream high = guard_->current_stream(), before = guard_->original_stream();
    join(high, before);
  }
  ForwardStream(const ForwardStream&) = delete;
  ForwardStream& operator=(const ForwardStream&) = delete;

 private:
  static void join(const c10::Stream& from, const c10::Stream& to) {  // `to` waits for `from`'s work
    c10::Event e(from.device_type());
    e.record(from);
    e.block(to);
  }
  std::optional<c10::StreamGuard> guard_;
};

}  // namespace

void validate_plugin_sections(const Recipe& r, const PluginRegistry& reg) {
  const std::pair<const char*, PluginKind> kinds[] = {{"model", PluginKind::Model},
                                                      {"tokenizer", PluginKind::Tokenizer},
                                                      {"data", PluginKind::Dataset},
                                                      {"optimizer", PluginKind::Optimizer},
                                                      {"checkpoint", PluginKind::Checkpoint}};
  for (const auto& [sec, kind] : kinds) {
    const std::string id = r.get_string(sec, "plugin");
    const PluginInfo* p = nullptr;
    try {
      p = &reg.find(kind, id);
    } catch (const Error& e) {
      throw Error(cat(r.where(sec, "plugin"), ": [", sec, "] plugin = '", id, "': ", e.what()));
    }
    ConfigSection section = r.section(sec);  // shares the table; defaults are filled in place
    apply_config_schema(*p, section, host_keys(sec));
  }
}

namespace {
TrainSummary train_and_keep_groups(const Recipe& r, const PluginRegistry& reg, const TrainHooks& hooks);
}  // namespace

TrainSummary train(const Recipe& r, const PluginRegistry& reg, const TrainHooks& hooks) {
  TrainSummary summary = train_and_keep_groups(r, reg, hooks);
  // Every model, buffer and pending collective is gone: release the process groups now, while
  // CUDA is still up. Left to the exit-time destructors, ProcessGroupNCCL tears its communicators
  // down after the CUDA runtime and aborts the process (seen on 2 H200s with the distributed
  // optimizer). On an error the groups stay: a rank that failed may leave the others mid-collective.
  ParallelRuntime::get().shutdown();
  return summary;
}

namespace {
TrainSummary train_and_keep_groups(const Recipe& r, const PluginRegistry& reg, const TrainHooks& hooks) {
  validate_plugin_sections(r, reg);  // every recipe error before any heavy work
  check_checkpoint_conversion(r, reg);  // [checkpoint] ckpt_convert_format (checkpoint_convert.h)

  const int64_t mbs = r.get_int("training", "micro_batch_size");
  const int64_t gbs = r.get_int("training", "global_batch_size");
  const int64_t train_iters = r.get_int("training", "train_iters");
  const int64_t eval_interval = r.get_int("training", "eval_interval");
  const int64_t eval_iters = r.get_int("training", "eval_iters");
  const int64_t log_interval = std::max<int64_t>(1, r.get_int("logging", "log_interval"));
  const int64_t exit_interval = r.get_int("training", "exit_interval");
  const uint64_t seed = static_cast<uint64_t>(r.get_int("training", "seed"));
  const std::string save_dir = r.has("checkpoint", "save") ? r.get_string("checkpoint", "save") : "";
  const std::string load_dir = r.has("checkpoint", "load") ? r.get_string("checkpoint", "load") : "";
  const int64_t save_interval = r.get_int("checkpoint", "save_interval");
  const Precision precision = read_precision(r);
  const bool fp16 = precision == Precision::FP16;
  GradScaler scaler(fp16 ? read_grad_scaler_config(r) : GradScalerConfig{});

  // The world first: the device is this rank's local GPU, and every layout error comes before
  // any heavy work.
  const WorldEnv env = read_world_env();
  RunFacts facts = run_facts();
  facts.seed = seed;
  facts.recipe_path = std::filesystem::absolute(r.path).string();
  facts.rank = env.rank;
  facts.world_size = env.world_size;
  facts.local_rank = env.local_rank;
  set_run_facts(facts);
  const at::Device device = pick_device(r.get_string("training", "device"));
  if (env.rank != 0 && spdlog::get_level() == spdlog::level::info) spdlog::set_level(spdlog::level::warn);
  MH_CORE_CHECK(!(fp16 && !device.is_cuda()), r.where("training", "precision"), ": [training] precision = fp16 needs a CUDA device (",
                "libtorch's CPU kernels lack float16 LayerNorm and matrix products)",
                "\nHINT: use precision = \"bf16\" or \"fp32\" on the CPU");
  const ParallelSetup par = start_parallel(r, device.is_cuda());
  const int64_t dp = par.sizes.dp();
  MH_CORE_CHECK(gbs % (mbs * dp) == 0, r.where("training", "global_batch_size"), ": global batch size (", gbs,
                ") is not divisible by micro batch size (", mbs, ") times data parallel size (", dp,
                ")\nHINT: make global_batch_size a multiple of micro_batch_size x ", dp);
  const int64_t num_micro = gbs / (mbs * dp);  // micro-batches per rank and iteration
  if (const int64_t n = r.get_int("training", "num_threads"); n > 0) at::set_num_threads(static_cast<int>(n));
  // CPU and CUDA default generators: dropout draws from them (saved in checkpoints). Megatron
  // seeds each pipeline stage apart (seed + 100 x pp rank): stages hold different layers.
  at::manual_seed(seed + 100 * static_cast<uint64_t>(par.pp_rank));

  // Pipeline stages: this rank's chunks (several with interleaving), checked as Megatron does.
  auto num_layers_v = r.section("model").table->get("num_layers");
  const int64_t num_layers = num_layers_v && num_layers_v->is_integer() ? *num_layers_v->value<int64_t>() : 0;
  std::vector<StageSpec> stages;
  try {
    if (par.sizes.pp > 1) {
      MH_CORE_CHECK(num_layers > 0, "pipeline parallelism needs [model] num_layers");
      stages = stages_for_rank(num_layers, par.sizes.pp, par.layers_per_virtual_stage, par.pp_rank);
      check_interleaved_microbatches(num_micro, par.sizes.pp, static_cast<int64_t>(stages.size()));
    }
  } catch (const Error& e) {
    throw Error(cat(r.where("parallel", "pipeline_model_parallel_size"), ": ", e.what()));
  }

  // Data before the model: a bad data path fails in seconds, not after building a large model.
  // Megatron's sample counts per split.
  SampleCounts counts;
  counts.train = static_cast<uint64_t>(train_iters * gbs);
  counts.valid = static_cast<uint64_t>((train_iters / eval_interval + 1) * eval_iters * gbs);
  counts.test = static_cast<uint64_t>(eval_iters * gbs);
  // Mock data takes the tokenizer's vocabulary size and end-of-document id, so it comes first
  // there; a corpus is checked before it (its BERT / T5 checks name the vocabulary's problems).
  const bool mock_data = r.get_bool("data", "mock_data");
  std::unique_ptr<Tokenizer> tokenizer;
  auto make_tokenizer = [&] {
    tokenizer = reg.create_tokenizer(r.get_string("tokenizer", "plugin"), r.section("tokenizer"), host_keys("tokenizer"));
  };
  if (mock_data) make_tokenizer();
  std::unique_ptr<DatasetFormat> format;
  if (!mock_data) format = reg.create_dataset(r.get_string("data", "plugin"), r.section("data"), host_keys("data"));
  const auto t_data = Clock::now();
  SplitSamples data;
  if (mock_data) {
    const std::optional<int32_t> eod = tokenizer->special_token(MH_TOKEN_EOD);
    MH_CORE_CHECK(eod.has_value(), r.where("data", "mock_data"), ": mock data ends each document with the tokenizer's ",
                  "end-of-document token, and tokenizer '", tokenizer->id(), "' has none\n",
                  "HINT: use a tokenizer with an EOD token (GPT2BPETokenizer, HuggingFaceTokenizer, NullTokenizer)");
    data = build_mock_gpt_samples(r, model_seq_length(r), counts, seed, tokenizer->vocab_size(), *eod);
  } else {
    data = build_gpt_samples(r, *format, model_seq_length(r), counts, seed);
  }
  spdlog::info("datasets ready in {:.2f} s: train {} samples, valid {}, test {}",
               std::chrono::duration<double>(Clock::now() - t_data).count(), data.train ? data.train->size() : 0,
               data.valid ? data.valid->size() : 0, data.test ? data.test->size() : 0);
  MH_CORE_CHECK(data.train && data.train->size() > 0, r.where("data", "split"),
                ": the train split is empty\nHINT: give the train split a non-zero share, e.g. split = \"969,30,1\"");
  const bool do_valid = eval_iters > 0 && data.valid && data.valid->size() > 0;
  if (eval_iters > 0 && !do_valid)
    spdlog::warn("the valid split is empty: evaluation is skipped (set data.split so valid gets documents)");

  if (!mock_data) make_tokenizer();

  // The model: one instance per pipeline chunk of this rank.
  const int64_t vocab = tokenizer->vocab_size();
  const int64_t padded_vocab = padded_vocab_size(vocab, r.get_int("parallel", "make_vocab_size_divisible_by"),
                                                 par.sizes.tp);
  const int64_t seq_length = model_seq_length(r);
  std::vector<std::unique_ptr<Model>> models;
  std::vector<Model*> chunks;
  {
    ModelOptions mo;
    mo.device = sdk::to_dl_device(device);
    mo.param_dtype = sdk::to_dl_dtype(param_dtype(precision));
    mo.padded_vocab_size = padded_vocab;
    mo.parallel_flags = par.sequence_parallel ? MH_PARALLEL_SEQUENCE_PARALLEL : 0u;
    if (stages.empty()) stages.push_back({0, -1, MH_STAGE_FIRST | MH_STAGE_LAST});
    for (const StageSpec& st : stages) {
      mo.layer_offset = st.layer_offset;
      mo.num_stage_layers = st.num_layers;
      mo.stage_flags = st.stage_flags;
      models.push_back(create_model(reg, r.get_string("model", "plugin"), r.section("model"), mo, host_keys("model")));
      MH_CORE_CHECK(par.sizes.pp == 1 || models.back()->has_pipeline(), r.where("parallel", "pipeline_model_parallel_size"),
                    ": model plugin '", models.back()->id(), "' has no pipeline extension (", MH_EXT_MODEL_PIPELINE,
                    ")\nHINT: use pipeline_model_parallel_size = 1 with this model");
      chunks.push_back(models.back().get());
    }
  }
  DataParallelOptions dpo;
  dpo.bucket_size = r.get_int("parallel", "ddp_bucket_size");
  dpo.overlap_grad_reduce = r.get_bool("parallel", "overlap_grad_reduce");
  dpo.use_distributed_optimizer = r.get_bool("parallel", "use_distributed_optimizer");
  dpo.overlap_param_gather = r.get_bool("parallel", "overlap_param_gather");
  dpo.overlap_optimizer_step = r.get_bool("parallel", "overlap_optimizer_step");
  dpo.store_param_remainders = precision == Precision::BF16 &&
                               r.get_bool("optimizer", "use_precision_aware_optimizer") &&
                               r.get_bool("optimizer", "store_param_remainders");
  dpo.main_grads_dtype = main_grads_dtype(r, precision);
  if (r.get_bool("optimizer", "use_precision_aware_optimizer") && precision != Precision::BF16 && par.rank == 0)
    spdlog::info("use_precision_aware_optimizer: {} parameters keep {} (param remainders need bf16)",
                 precision_name(precision), precision == Precision::FP32 ? "no separate masters" : "fp32 masters");
  DataParallel ddp(chunks, dpo);
  auto optimizer = create_optimizer(reg, r.get_string("optimizer", "plugin"), r.section("optimizer"),
                                    sdk::to_dl_device(device), host_keys("optimizer"));
  ddp.setup_optimizer(*optimizer);
  auto ckpt = create_checkpoint_format(reg, r.get_string("checkpoint", "plugin"), r.section("checkpoint"),
                                       host_keys("checkpoint"));
  {
    int64_t num_params = 0;
    size_t num_tensors = 0;
    for (Model* m : chunks)
      for (const Param& p : m->params()) {
        num_params += p.data.numel();
        ++num_tensors;
      }
    spdlog::info("model '{}': {} parameters on this rank ({} tensors, {} chunk(s)), vocab {} padded to {}, device {}, {}",
                 chunks.front()->id(), num_params, num_tensors, chunks.size(), vocab, padded_vocab, device.str(),
                 precision_name(precision));
    const DataParallelMemory mem = ddp.memory(optimizer.get());
    spdlog::info("memory per parameter: {:.2f} bytes (params {} B, grads {} B, optimizer state {} B)",
                 mem.bytes_per_param(), mem.param_buffer_bytes, mem.grad_buffer_bytes,
                 mem.optimizer_state_bytes + mem.master_bytes);
  }

  CheckpointParts parts;
  parts.chunks = chunks;
  parts.visit_optimizer = [&](const StateVisitor& fn) {
    ddp.visit_optimizer_state(*optimizer, fn);
    if (fp16) scaler.visit_state(fn);
  };
  parts.optimizer_id = optimizer->id();
  parts.rank = par.rank;
  parts.world_size = par.world;
  parts.model_source_rank = par.many() ? ParallelRuntime::get().group("dp-cp").global_rank(0) : 0;
  parts.optimizer_sharded = dpo.use_distributed_optimizer && dp * par.sizes.cp > 1;
  if (parts.optimizer_sharded)  // where each shard lies in its parameter: the checkpoint reshards it
    for (const auto& sh : ddp.optimizer_shards()) parts.optimizer_flat_shards[sh.name] = {sh.offset, sh.numel};
  parts.layout = par.layout();
  parts.barrier = world_barrier;
  parts.any_rank = reduce_any_flag;

  // Resume from the latest checkpoint in `load`, as Megatron does; a missing tracker starts fresh.
  TrainingState state;
  std::optional<int64_t> resumed;  // the iteration loaded from load_dir
  if (!load_dir.empty()) {
    if (auto latest = find_resume_checkpoint(*ckpt, load_dir, par.rank == 0)) {
      resumed = *latest;
      // finetune (Megatron's --finetune): weights only; iteration, samples, optimizer, scheduler start afresh.
      const bool finetune = r.get_bool("checkpoint", "finetune");
      LoadOptions lo;
      lo.load_optimizer = !finetune && !r.get_bool("checkpoint", "no_load_optim");
      lo.load_rng = !finetune && !r.get_bool("checkpoint", "no_load_rng");
      const auto t_load = Clock::now();
      state = load_checkpoint(*ckpt, load_dir, *latest, parts, lo);
      const double load_s = std::chrono::duration<double>(Clock::now() - t_load).count();
      const double load_gb = static_cast<double>(tree_bytes(iteration_dir(load_dir, *latest))) / 1e9;
      spdlog::info("loaded {} in {:.2f} s ({:.2f} GB in the folder, {:.2f} GB/s)", iteration_dir(load_dir, *latest),
                   load_s, load_gb, load_gb / std::max(load_s, 1e-9));
      if (!lo.load_optimizer) ddp.reload_model_params();  // fp32 masters follow the loaded weights
      if (finetune) {
        state = TrainingState{};
        spdlog::info("finetune: loaded the weights of {}; starting at iteration 0", iteration_dir(load_dir, *latest));
      } else {
        spdlog::info("resumed from {} at iteration {}", iteration_dir(load_dir, *latest), state.iteration);
      }
      if (state.iteration >= train_iters)
        spdlog::warn("the checkpoint is at iteration {} and train_iters is {}: nothing left to train "
                     "(raise training.train_iters to continue)", state.iteration, train_iters);
    } else {
      spdlog::warn("{}: no {} found; starting from random initialisation", load_dir,
                   "latest_checkpointed_iteration.txt");
    }
  }
  // keep_last_n holds from the start, not only after this run's first save: a run killed between
  // publishing a checkpoint and pruning the older ones left one too many (and a run resumed at
  // train_iters saves nothing). The checkpoint this run resumed from always stays.
  const int64_t keep_last_n = r.get_int("checkpoint", "keep_last_n");
  if (par.rank == 0 && keep_last_n > 0 && !save_dir.empty() && std::filesystem::is_directory(save_dir))
    prune_checkpoints(save_dir, keep_last_n,
                      resumed && std::filesystem::equivalent(save_dir, load_dir) ? resumed : std::nullopt);
  if (checkpoint_conversion_requested(r)) {  // Megatron's --ckpt-convert-format: write it again, stop
    convert_loaded_checkpoint(r, reg, state, parts, read_file(r.path));
    TrainSummary converted;
    converted.start_iteration = converted.last_iteration = state.iteration;
    return converted;
  }

  std::optional<int32_t> eod_mask;
  if (r.get_bool("data", "eod_mask_loss")) eod_mask = tokenizer->special_token(MH_TOKEN_EOD);

  LRScheduleConfig lc;
  lc.max_lr = r.get_float("optimizer", "lr");
  lc.min_lr = r.get_float("optimizer", "min_lr");
  lc.init_lr = r.get_float("training", "lr_warmup_init");
  lc.style = r.get_string("training", "lr_decay_style");
  const int64_t decay_iters = r.has("training", "lr_decay_iters") ? r.get_int("training", "lr_decay_iters") : train_iters;
  lc.decay_steps = static_cast<double>(decay_iters * gbs);
  lc.warmup_steps = r.has("training", "lr_warmup_fraction")
                        ? r.get_float("training", "lr_warmup_fraction") * lc.decay_steps
                        : static_cast<double>(r.get_int("training", "lr_warmup_iters") * gbs);
  LRSchedule schedule(lc);
  const double weight_decay = r.get_float("optimizer", "weight_decay");
  const double clip_grad = r.get_float("optimizer", "clip_grad");
  // Without fp16's overflow check nothing on the host needs the norm before the step: clip on the
  // device (MEGAHOST_CLIP_ON_DEVICE=0: read the norm back first, the device idles meanwhile).
  const char* clip_env = std::getenv("MEGAHOST_CLIP_ON_DEVICE");
  const bool clip_on_device =
      !fp16 && optimizer->applies_grad_scale_tensor() && (clip_env == nullptr || std::string(clip_env) != "0");
  // The model's own count when it reports one (gpt, bert, t5: mh.model.flops/1), else GPT's formula.
  const std::optional<double> model_flops = chunks.front()->train_flops_per_sample();
  const double flops_per_iter = model_flops ? *model_flops * static_cast<double>(gbs)
                                            : model_flops_per_iteration(r, gbs, padded_vocab);
  const std::string recipe_text = read_file(r.path);

  // Megatron prints (and we write metrics) on the last rank: it holds the last pipeline stage.
  MetricsFile metrics(par.logging_rank() && r.has("logging", "metrics_file") ? r.get_string("logging", "metrics_file")
                                                                              : "");
  auto print = [&](const std::string& line) {
    if (par.logging_rank()) print_line(line);
  };
  std::signal(SIGINT, on_stop_signal);
  std::signal(SIGTERM, on_stop_signal);

  TrainSummary summary;
  summary.start_iteration = state.iteration;
  if (hooks.on_start)
    hooks.on_start({gbs, seq_length, padded_vocab, par.world, flops_per_iter, device.is_cuda(),
                    device.is_cuda() ? static_cast<int>(device.index()) : -1});

  // Micro-batch m of an iteration that starts at sample `first`, as this rank sees it.
  auto micro_batch = [&](const SampleSource& src, uint64_t first, int64_t m) {
    MicroBatchTensors b = make_gpt_batch(src, micro_batch_first_sample(first, m, mbs, dp, par.dp_rank), mbs,
                                         seq_length, eod_mask, device);
    return slice_for_context_parallel(b, par.sizes.cp, par.cp_rank);
  };
  auto mean_loss = [](const std::vector<Loss>& losses) {
    double sum = 0;
    for (const Loss& l : losses) sum += l.loss_sum / std::max(1.0, l.num_tokens);
    return losses.empty() ? 0.0 : sum / static_cast<double>(losses.size());
  };
  auto set_training = [&](bool on) {
    for (Model* m : chunks) m->set_training(on);
  };

  auto evaluate = [&](int64_t iteration, const std::string& label) {
    ddp.wait_param_gather();  // evaluate the updated parameters
    set_training(false);
    // Each evaluation reads the next eval_iters x global_batch valid samples, as Megatron's
    // valid iterator continues where the previous evaluation stopped.
    const int64_t evals_before = iteration / eval_interval - (iteration % eval_interval == 0 ? 1 : 0);
    uint64_t next = static_cast<uint64_t>(std::max<int64_t>(0, evals_before) * eval_iters * gbs);
    double total = 0;
    for (int64_t e = 0; e < eval_iters; ++e, next += static_cast<uint64_t>(gbs)) {
      ScheduleArgs sa;
      sa.chunks = chunks;
      sa.num_microbatches = num_micro;
      sa.micro_batch_size = mbs;
      sa.batch = [&, first = next](int64_t m) { return micro_batch(*data.valid, first, m); };
      sa.forward_only = true;
      const std::vector<Loss> losses = run_schedule(sa);
      total += reduce_logged_loss(mean_loss(losses), !losses.empty());
    }
    const double loss = total / eval_iters;
    const double ppl = std::exp(std::min(20.0, loss));
    std::string line = cat(" validation loss at ", label, " | lm loss value: ", fmt("%.6E", loss),
                           " | lm loss PPL: ", fmt("%.6E", ppl), " | ");
    const std::string dashes(line.size() + 1, '-');
    print(dashes);
    print(line);
    print(dashes);
    metrics.write({{"iteration", iteration}, {"split", "valid"}, {"lm_loss", loss}, {"ppl", ppl}});
    if (!summary.first_valid_loss) summary.first_valid_loss = loss;
    summary.last_valid_loss = loss;
    set_training(true);
  };

  const bool async_save = r.get_bool("checkpoint", "async_save");
  AsyncCheckpointSaver async_saver;  // waits for the previous save, then copies the state and returns
  auto save = [&](int64_t iteration) {
    if (save_dir.empty()) return;
    const auto t0 = Clock::now();
    ddp.wait_param_gather();  // the parameters must be the updated ones
    if (async_save) {
      // Logs how long it waited for the previous save and how long the copy took.
      async_saver.save(*ckpt, save_dir, state, parts, recipe_text, r.get_int("checkpoint", "keep_last_n"));
      return;
    }
    save_checkpoint(*ckpt, save_dir, state, parts, recipe_text, r.get_int("checkpoint", "keep_last_n"));
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    const double gb = static_cast<double>(tree_bytes(iteration_dir(save_dir, iteration))) / 1e9;
    spdlog::info("saved checkpoint at iteration {} to {} in {:.2f} s ({:.2f} GB, {:.2f} GB/s)", iteration,
                 iteration_dir(save_dir, iteration), s, gb, gb / std::max(s, 1e-9));
  };

  set_training(true);
  const ForwardStream forward_stream(device, ddp.optimizer_overlapped());
  ddp.zero_grad();
  double interval_loss = 0, interval_ms = 0, interval_sync_ms = 0;
  int64_t interval_n = 0, interval_skipped = 0;
  int64_t iteration = state.iteration;
  bool saved_last = false;
  while (iteration < train_iters) {
    if (hooks.on_iteration_start) hooks.on_iteration_start(iteration + 1);
    const auto t0 = Clock::now();
    const double lr = schedule.lr_at(static_cast<double>(state.consumed_train_samples));
    ddp.before_forward();  // models that gate finish each pending update when they need it
    ddp.enable_grad_sync(false);  // on again right before each chunk's last backward
    ScheduleArgs sa;
    sa.chunks = chunks;
    sa.num_microbatches = num_micro;
    sa.micro_batch_size = mbs;
    sa.batch = [&, first = static_cast<uint64_t>(state.consumed_train_samples)](int64_t m) {
      return micro_batch(*data.train, first, m);
    };
    const double loss_scale = fp16 ? scaler.scale() : 1.0;
    sa.grad_scale = loss_scale / static_cast<double>(num_micro);
    sa.before_last_backward = [&](size_t chunk) { ddp.enable_grad_sync(chunk, true); };
    const std::vector<Loss> losses = run_schedule(sa);
    // The gradient reduction left after backward: all of it without overlap_grad_reduce, only
    // the part backward did not hide with it (logged as grad_sync_ms).
    const auto t_sync = Clock::now();
    ddp.finish_grad_sync();
    interval_sync_ms += std::chrono::duration<double, std::milli>(Clock::now() - t_sync).count();
    const double loss = reduce_logged_loss(mean_loss(losses), !losses.empty());
    ++iteration;
    double grad_norm = 0;
    bool norm_computed = true;
    if (!fp16 && clip_grad <= 0) {
      // No clipping and no overflow check: nothing needs the norm, so skip its pass over every
      // gradient (Megatron computes it only to clip; the log shows no grad norm).
      ddp.step(*optimizer, lr, weight_decay, iteration, 1.0);
      ddp.zero_grad();
      norm_computed = false;
    } else if (clip_on_device) {
      // The norm and the clipping coefficient stay on the device: the step is queued behind them
      // and the host reads the norm (for the log) while the step runs.
      const at::Tensor norm = ddp.grad_norm_tensor();  // float64 [1]
      const Readback norm_back(norm);
      ddp.step(*optimizer, lr, weight_decay, iteration, 1.0, DataParallel::clip_coefficient_tensor(norm, clip_grad));
      ddp.zero_grad();
      grad_norm = norm_back.read().item<double>();
    } else {
      // fp16: the gradients carry the loss scale; an overflow shows as a non-finite norm (the same
      // on every rank: the norm is reduced over all of them) and skips the step, as Megatron does.
      grad_norm = ddp.grad_norm() / loss_scale;
      const bool found_inf = fp16 && !std::isfinite(grad_norm);
      if (found_inf) {
        ++interval_skipped;
      } else {
        // Clipping and unscaling folded into the optimizer's pass over the gradients.
        ddp.step(*optimizer, lr, weight_decay, iteration,
                 DataParallel::clip_coefficient(grad_norm, clip_grad) / loss_scale);
      }
      if (fp16) scaler.update(found_inf);
      ddp.zero_grad();
    }
    state.iteration = iteration;
    state.consumed_train_samples += gbs;
    saved_last = false;
    MH_CORE_CHECK(std::isfinite(loss), "iteration ", iteration, ": loss is ", loss,
                  "\nHINT: lower the learning rate or check the data; the last checkpoint is intact");
    if (hooks.on_iteration_end) hooks.on_iteration_end(iteration, loss);

    const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    interval_loss += loss;
    interval_ms += ms;
    ++interval_n;
    summary.last_train_loss = loss;
    if (iteration % log_interval == 0 || iteration == train_iters) {
      const double avg_ms = interval_ms / interval_n, avg_loss = interval_loss / interval_n;
      const double next_lr = schedule.lr_at(static_cast<double>(state.consumed_train_samples));
      // Megatron's throughput per GPU: the iteration's model FLOPs over time and world size.
      const double tflops = flops_per_iter > 0 ? flops_per_iter / (avg_ms / 1000.0) / 1e12 / par.world : 0;
      char head[96];
      std::snprintf(head, sizeof(head), " iteration %8lld/%8lld |", static_cast<long long>(iteration),
                    static_cast<long long>(train_iters));
      char consumed[64];
      std::snprintf(consumed, sizeof(consumed), " consumed samples: %12lld |",
                    static_cast<long long>(state.consumed_train_samples));
      char gbs_s[48];
      std::snprintf(gbs_s, sizeof(gbs_s), " global batch size: %5lld |", static_cast<long long>(gbs));
      print(cat(head, consumed, " elapsed time per iteration (ms): ", fmt("%.1f", avg_ms), " |",
                " throughput per GPU (TFLOP/s/GPU): ", fmt("%.1f", tflops), " |", " learning rate: ",
                fmt("%.6E", next_lr), " |", gbs_s, " lm loss: ", fmt("%.6E", avg_loss), " |",
                " loss scale: ", fmt("%.1f", loss_scale), " |",
                norm_computed ? cat(" grad norm: ", fmt("%.3f", grad_norm), " |") : std::string(),
                " number of skipped iterations: ", fmt("%3.0f", static_cast<double>(interval_skipped)), " |",
                " number of nan iterations:   0 |"));
      nlohmann::json line = {{"iteration", iteration},
                             {"split", "train"},
                             {"lm_loss", avg_loss},
                             {"lr", next_lr},
                             {"consumed_samples", state.consumed_train_samples},
                             {"elapsed_ms", avg_ms},
                             {"tokens_per_s", static_cast<double>(gbs * seq_length) / (avg_ms / 1000.0)},
                             {"tflops", tflops},
                             {"grad_sync_ms", interval_sync_ms / interval_n},
                             {"loss_scale", loss_scale},
                             {"skipped_iterations", interval_skipped}};
      if (norm_computed) line["grad_norm"] = grad_norm;
      metrics.write(line);
      interval_loss = interval_ms = interval_sync_ms = 0;
      interval_n = interval_skipped = 0;
    }
    if (do_valid && iteration % eval_interval == 0) evaluate(iteration, cat("iteration ", iteration));
    if (save_interval > 0 && iteration % save_interval == 0) {
      save(iteration);
      saved_last = true;
    }
    async_saver.poll();  // publishes a finished background save
    // A signal reaches the ranks at different moments: agree on it, so all stop together.
    int sig = g_stop_signal.load();
    if (par.many()) sig = static_cast<int>(reduce_any_flag(sig != 0)) * std::max(sig, 1);
    if (sig != 0 || (exit_interval > 0 && iteration % exit_interval == 0)) {
      if (!saved_last) save(iteration);
      async_saver.finish();
      spdlog::warn("{} at iteration {}: {}; exiting", sig != 0 ? cat("signal ", sig) : std::string("exit_interval"),
                   iteration, save_dir.empty() ? "no checkpoint (checkpoint.save is not set)" : "checkpoint saved");
      summary.interrupted = true;
      summary.last_iteration = iteration;
      return summary;
    }
  }
  if (iteration > summary.start_iteration && !saved_last) save(iteration);
  async_saver.finish();
  // Megatron evaluates once more at the end; skip it when the last iteration was just evaluated.
  if (do_valid && iteration > summary.start_iteration && iteration % eval_interval != 0)
    evaluate(iteration, "the end of training for val data");
  summary.last_iteration = iteration;
  return summary;
}
}  // namespace

std::string generate(const Recipe& r, const PluginRegistry& reg, const std::string& prompt, int64_t max_new_tokens) {
  validate_plugin_sections(r, reg);
  Components c = build_model_and_tokenizer(r, reg);
  auto ckpt = create_checkpoint_format(reg, r.get_string("checkpoint", "plugin"), r.section("checkpoint"),
                                       host_keys("checkpoint"));
  // The same choice as a resume: the tracked checkpoint when complete, else the newest complete one.
  std::string dir = r.has("checkpoint", "load") ? r.get_string("checkpoint", "load") : "";
  std::optional<int64_t> latest = dir.empty() ? std::nullopt : find_resume_checkpoint(*ckpt, dir);
  if (!latest) {
    dir = r.has("checkpoint", "save") ? r.get_string("checkpoint", "save") : "";
    latest = dir.empty() ? std::nullopt : find_resume_checkpoint(*ckpt, dir);
  }
  MH_CORE_CHECK(latest.has_value(), r.path, ": no checkpoint to generate from (checkpoint.load / checkpoint.save have no ",
                "complete iter_* folder)\nHINT: train first, or --set checkpoint.load=<folder>");
  LoadOptions lo;
  lo.load_optimizer = false;
  lo.load_rng = false;
  CheckpointParts parts;
  parts.chunks = {c.model.get()};
  load_checkpoint(*ckpt, dir, *latest, parts, lo);
  c.model->set_training(false);

  std::vector<int32_t> ids = c.tokenizer->encode(prompt);
  MH_CORE_CHECK(!ids.empty(), "the prompt encodes to no tokens\nHINT: give a non-empty prompt");
  const auto eod = c.tokenizer->special_token(MH_TOKEN_EOD);
  std::vector<int32_t> out;
  for (int64_t step = 0; step < max_new_tokens; ++step) {
    // Keep the last seq_length tokens (the model's context window).
    const size_t start = ids.size() > static_cast<size_t>(c.seq_length) ? ids.size() - c.seq_length : 0;
    std::vector<int64_t> window(ids.begin() + static_cast<std::ptrdiff_t>(start), ids.end());
    at::Tensor tokens = at::from_blob(window.data(), {1, static_cast<int64_t>(window.size())}, at::kLong).to(c.device);
    at::Tensor logits = c.model->logits(tokens);  // [1, s, V]
    at::Tensor last = logits.select(1, logits.size(1) - 1).squeeze(0).narrow(0, 0, c.vocab);  // [vocab]
    const int32_t next = static_cast<int32_t>(last.argmax().item<int64_t>());
    if (eod && next == *eod) break;
    ids.push_back(next);
    out.push_back(next);
  }
  return c.tokenizer->decode(out);
}

}  // namespace megahost::core
