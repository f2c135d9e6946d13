// DataParallel over 2 Gloo processes against one process running the whole global batch: the
// losses and grad norms of 3 AdamW iterations (with clipping) within 1e-5 relative, the final
// parameters within 1e-5 absolute (fp32, CPU); under the distributed optimizer each rank holds
// about half the optimizer state.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <map>

#include "dp_util.h"
#include "megahost/core/parallel/world.h"
#include "multiprocess/multiprocess.h"

using namespace dptest;

namespace {

struct Reference {
  std::vector<double> loss, norm;  // per iteration: mean loss over the global batch, grad norm
  std::vector<at::Tensor> params;
};

std::string ref_file() { return mp::shared_dir() + "/reference.bin"; }

void save_reference(const std::string& optimizer_toml) {
  auto model = tiny_gpt();
  auto opt = adamw(optimizer_toml);
  auto abi = model->abi_params();
  opt->setup(*abi);
  std::ofstream out(ref_file(), std::ios::binary);
  for (int64_t it = 0; it < kIters; ++it) {
    const IterResult r = plain_iteration(*model, *opt, *abi, it);
    const double loss = r.loss_sum / kGlobalBatch;
    out.write(reinterpret_cast<const char*>(&loss), sizeof loss);
    out.write(reinterpret_cast<const char*>(&r.grad_norm), sizeof r.grad_norm);
  }
  for (auto& p : model->params()) {
    at::Tensor t = p.data.contiguous();
    const int64_t ndim = t.dim();
    out.write(reinterpret_cast<const char*>(&ndim), sizeof ndim);
    out.write(reinterpret_cast<const char*>(t.sizes().data()), static_cast<std::streamsize>(ndim * sizeof(int64_t)));
    out.write(static_cast<const char*>(t.data_ptr()), static_cast<std::streamsize>(t.nbytes()));
  }
}

Reference load_reference(const std::vector<core::Param>& like) {
  Reference r;
  std::ifstream in(ref_file(), std::ios::binary);
  EXPECT_TRUE(in.good()) << ref_file();
  for (int64_t it = 0; it < kIters; ++it) {
    double l = 0, n = 0;
    in.read(reinterpret_cast<char*>(&l), sizeof l);
    in.read(reinterpret_cast<char*>(&n), sizeof n);
    r.loss.push_back(l);
    r.norm.push_back(n);
  }
  for (size_t i = 0; i < like.size(); ++i) {
    int64_t ndim = 0;
    in.read(reinterpret_cast<char*>(&ndim), sizeof ndim);
    std::vector<int64_t> shape(static_cast<size_t>(ndim));
    in.read(reinterpret_cast<char*>(shape.data()), static_cast<std::streamsize>(ndim * sizeof(int64_t)));
    at::Tensor t = at::empty(shape, at::kFloat);  // the FULL parameter (a TP rank holds a slice)
    in.read(static_cast<char*>(t.data_ptr()), static_cast<std::streamsize>(t.nbytes()));
    r.params.push_back(t);
  }
  EXPECT_TRUE(in.good());
  return r;
}

// This worker's runtime over 2 Gloo processes (tp = 1 unless given).
core::ParallelRuntime& init_two_ranks(int tp = 1) {
  core::ParallelSizes sizes;
  sizes.world = 2;
  sizes.tp = tp;
  auto& rt = core::ParallelRuntime::get();
  rt.init(sizes, /*use_cuda=*/false, std::chrono::seconds(60));
  return rt;
}

// This tensor-parallel rank's slice of a full reference parameter.
at::Tensor tp_slice(const at::Tensor& full, const core::Param& p, int rank, int size) {
  if (p.tensor_parallel_dim < 0) return full;
  const int64_t part = full.size(p.tensor_parallel_dim) / size;
  return full.narrow(p.tensor_parallel_dim, rank * part, part);
}

// tol: relative for the losses and norms, absolute for the parameters.
void worker(const core::DataParallelOptions& opts, int tp, uint32_t parallel_flags, const std::string& optimizer_toml,
            double tol) {
  auto& rt = init_two_ranks(tp);
  const int rank = rt.dp_rank(), size = rt.group("dp").size();
  ASSERT_EQ(size * tp, 2);
  const int tp_rank = rt.tp_rank();
  auto model = tiny_gpt(parallel_flags);
  core::DataParallel dp({model.get()}, opts);
  ASSERT_TRUE(dp.bound(0));
  auto opt = adamw(optimizer_toml);
  dp.setup_optimizer(*opt);
  const Reference ref = load_reference(model->params());
  for (int64_t it = 0; it < kIters; ++it) {
    const IterResult r = dp_iteration(*model, dp, *opt, it, rank, size);
    at::Tensor loss = at::full({1}, r.loss_sum, at::kDouble);
    rt.group("dp").all_reduce(loss);
    const double mean = loss.item<double>() / kGlobalBatch;
    EXPECT_NEAR(mean, ref.loss[it], tol * ref.loss[it]) << "iteration " << it;
    EXPECT_NEAR(r.grad_norm, ref.norm[it], tol * ref.norm[it]) << "iteration " << it;
  }
  dp.wait_param_gather();
  if (opts.overlap_grad_reduce) {  // every bucket went out from the backward hooks, once per iteration
    EXPECT_GT(dp.plan(0).buckets.size(), 2u);
    EXPECT_EQ(dp.overlapped_launches(), kIters * static_cast<int64_t>(dp.plan(0).buckets.size()));
  } else {
    EXPECT_EQ(dp.overlapped_launches(), 0);
  }
  const auto params = model->params();
  for (size_t i = 0; i < params.size(); ++i)
    EXPECT_LE((params[i].data - tp_slice(ref.params[i], params[i], tp_rank, tp)).abs().max().item<double>(), tol)
        << params[i].name << " (" << (params[i].data - tp_slice(ref.params[i], params[i], tp_rank, tp)).abs().gt(tol).sum().item<int64_t>() << " of " << params[i].data.numel() << " elements)";
  EXPECT_GT(ref.norm[0], kClip) << "the test must exercise clipping";

  const core::DataParallelMemory m = dp.memory(opt.get());
  // AdamW: 2 fp32 tensors, or 2 bf16 / fp16 / fp8 ones; fp16 and fp8 add a float32 scale per
  // tensor (this rank's shards under the distributed optimizer) and moment.
  auto dtype_of = [&](const std::string& key) {  // the moment's dtype in optimizer_toml, fp32 by default
    const size_t at = optimizer_toml.find(key + " = \"");
    if (at == std::string::npos) return std::string("fp32");
    const size_t start = at + key.size() + 4;
    return optimizer_toml.substr(start, optimizer_toml.find('"', start) - start);
  };
  const double views = static_cast<double>(opts.use_distributed_optimizer ? dp.optimizer_shards().size()
                                                                          : params.size());
  double full_state = 0, scales = 0;
  for (const char* key : {"exp_avg_dtype", "exp_avg_sq_dtype"}) {
    const std::string d = dtype_of(key);
    full_state += (d == "fp8" ? 1.0 : d == "fp32" ? 4.0 : 2.0) * static_cast<double>(m.num_params);
    if (d == "fp8" || d == "fp16") scales += 4.0 * views;
  }
  if (opts.use_distributed_optimizer) {
    // 1/2 of the state, give or take the padding of each bucket and the step counter
    const double slack = 8.0 * 2.0 * static_cast<double>(dp.plan(0).buckets.size()) + 64.0;
    EXPECT_NEAR(static_cast<double>(m.optimizer_state_bytes), full_state / 2 + scales, slack);
    // The two ranks' shards tile every parameter exactly once: count the elements each covers.
    std::map<std::string, at::Tensor> cover;
    for (const auto& p : params) cover[p.name] = at::zeros({p.data.numel()}, at::kLong);
    for (const auto& sh : dp.optimizer_shards()) {
      ASSERT_TRUE(cover.count(sh.name)) << sh.name;
      EXPECT_EQ(sh.param_numel, cover[sh.name].numel());
      cover[sh.name].narrow(0, sh.offset, sh.numel).add_(1);
    }
    for (auto& [name, c] : cover) {
      rt.group("dp").all_reduce(c);
      EXPECT_TRUE(at::equal(c, at::ones_like(c))) << name;
    }
  } else {
    EXPECT_NEAR(static_cast<double>(m.optimizer_state_bytes), full_state + scales, 64.0);
  }
  if (rank == 0)
    std::printf("[dp] bytes/param: %.3f (param %lld, grad %lld, optimizer %lld bytes; %lld params)\n",
                m.bytes_per_param(), static_cast<long long>(m.param_buffer_bytes),
                static_cast<long long>(m.grad_buffer_bytes), static_cast<long long>(m.optimizer_state_bytes),
                static_cast<long long>(m.num_params));
  rt.shutdown();
}

void run(const core::DataParallelOptions& opts, int tp = 1, uint32_t parallel_flags = 0,
         const std::string& optimizer_toml = "", double tol = 1e-5) {
  if (!mp::is_worker()) {
    save_reference(optimizer_toml);
    mp::run_workers(2);
    return;
  }
  worker(opts, tp, parallel_flags, optimizer_toml, tol);
}

}  // namespace

TEST(DpMultiprocess, Dp2EqualsOneProcess) { run({}); }

TEST(DpMultiprocess, Dp2OverlappedSmallBucketsEqualsOneProcess) {
  core::DataParallelOptions o;
  o.bucket_size = 2000;  // several buckets, launched from the backward hooks
  o.overlap_grad_reduce = true;
  run(o);
}

TEST(DpMultiprocess, Dp2DistributedOptimizerEqualsOneProcess) {
  core::DataParallelOptions o;
  o.bucket_size = 2000;
  o.overlap_grad_reduce = true;
  o.use_distributed_optimizer = true;
  o.overlap_param_gather = true;
  run(o);
}

// Megatron's --exp-avg-dtype / --exp-avg-sq-dtype bf16 under the distributed optimizer: each
// rank's shard of the moments is rounded with the random bits of its elements' indices within
// the whole parameter (ABI 1.10 param_offsets), so the two ranks' shards round as the one process
// does and the figures are the one process's.
TEST(DpMultiprocess, Dp2DistributedOptimizerBf16MomentsEqualsOneProcess) {
  core::DataParallelOptions o;
  o.bucket_size = 2000;
  o.overlap_grad_reduce = true;
  o.use_distributed_optimizer = true;
  run(o, 1, 0, "use_precision_aware_optimizer = true\nexp_avg_dtype = \"bf16\"\nexp_avg_sq_dtype = \"bf16\"\n");
}

// Megatron's --exp-avg-dtype fp8 (E4M3) and --exp-avg-sq-dtype fp16, one float32 scale per tensor
// and moment: on dp = 2 without the distributed optimizer every rank holds whole tensors, scaled
// as the one process scales them, so the figures are the one process's.
TEST(DpMultiprocess, Dp2Fp8MomentsEqualsOneProcess) {
  core::DataParallelOptions o;
  o.bucket_size = 2000;
  o.overlap_grad_reduce = true;
  run(o, 1, 0, "use_precision_aware_optimizer = true\nexp_avg_dtype = \"fp8\"\nexp_avg_sq_dtype = \"fp16\"\n");
}

// The same under the distributed optimizer: each rank scales its own shard of a tensor (as
// Megatron's shards of Transformer Engine's FusedAdam states are scaled), so a moment rounds to
// another E4M3 value than the one process's where the shard's largest value differs from the
// tensor's. The figures follow within that rounding: each of the 3 updates (at most lr = 1e-3)
// moves by fp8's relative rounding of m plus half fp16's of v, 3e-3 x (2^-4 + 2^-12) = 1.9e-4
// (measured: parameters 1.7e-4 apart, losses 9e-7 and norms 2e-5 relative).
TEST(DpMultiprocess, Dp2DistributedOptimizerFp8MomentsFollowsOneProcess) {
  core::DataParallelOptions o;
  o.bucket_size = 2000;
  o.overlap_grad_reduce = true;
  o.use_distributed_optimizer = true;
  run(o, 1, 0, "use_precision_aware_optimizer = true\nexp_avg_dtype = \"fp8\"\nexp_avg_sq_dtype = \"fp16\"\n",
      2e-4);
}

// The optimizer step in pieces over dp = 2 (each rank runs its pieces as its forward names the
// parameters), with the reductions overlapped: the one-process figures.
TEST(DpMultiprocess, Dp2OptimizerStepInPiecesEqualsOneProcess) {
  core::DataParallelOptions o;
  o.bucket_size = 2000;
  o.overlap_grad_reduce = true;
  o.overlap_optimizer_step = true;
  o.optimizer_piece_size = 2500;
  run(o);
}

// No data parallelism: the finalize step's sum of the sequence-parallel (replicated) norm and
// bias grads over tp, and the norm counting replicated parameters once across tp.
TEST(DpMultiprocess, Tp2SequenceParallelEqualsOneProcess) {
  core::DataParallelOptions o;
  o.bucket_size = 2000;
  o.overlap_grad_reduce = true;
  run(o, /*tp=*/2, MH_PARALLEL_SEQUENCE_PARALLEL);
}

// bf16 parameters, fp32 main grads, fp32 master weights and AdamW state sharded over dp = 2:
// Megatron's 6 + 12/d bytes per parameter (here 12), measured as the tensors' nbytes.
TEST(DpMultiprocess, Dp2DistributedOptimizerBf16BytesPerParam) {
  if (!mp::is_worker()) {
    mp::run_workers(2);
    return;
  }
  auto& rt = init_two_ranks();
  auto model = tiny_gpt(0, {kDLBfloat, 16, 1});
  core::DataParallelOptions o;
  o.use_distributed_optimizer = true;
  core::DataParallel dp({model.get()}, o);
  auto opt = adamw();
  dp.setup_optimizer(*opt);
  const at::Tensor before = model->params().front().data.clone();
  for (int64_t it = 0; it < 2; ++it) dp_iteration(*model, dp, *opt, it, rt.dp_rank(), 2);
  const at::Tensor after = model->params().front().data;
  EXPECT_FALSE(at::equal(before, after));  // the gathered update reached the bf16 parameters
  EXPECT_TRUE(after.isfinite().all().item<bool>());
  // every rank holds the same parameters after the all-gather
  at::Tensor sum = after.to(at::kFloat), mine = sum.clone();
  rt.group("dp").all_reduce(sum);
  EXPECT_TRUE(at::equal(sum, 2 * mine));

  const core::DataParallelMemory m = dp.memory(opt.get());
  const double n = static_cast<double>(m.num_params);
  EXPECT_EQ(m.param_buffer_bytes, 2 * dp.plan(0).numel);
  EXPECT_EQ(m.grad_buffer_bytes, 4 * dp.plan(0).numel);
  EXPECT_NEAR(static_cast<double>(m.master_bytes), 4 * n / 2, 16.0);
  EXPECT_NEAR(m.bytes_per_param(), 6.0 + 12.0 / 2, 0.01);
  if (rt.rank() == 0)
    std::printf("[dp] bf16 + distributed optimizer, d = 2: %.3f bytes/param\n", m.bytes_per_param());
  rt.shutdown();
}

// bf16 runs: one process (DataParallel of size 1, the runtime not initialised) writes the mean
// losses, grad norms and final parameters of kIters iterations to `path`...
void write_bf16_reference(const std::string& path, const core::DataParallelOptions& opts) {
  auto model = tiny_gpt(0, {kDLBfloat, 16, 1});
  core::DataParallel dp({model.get()}, opts);
  auto opt = adamw();
  dp.setup_optimizer(*opt);
  std::ofstream out(path, std::ios::binary);
  for (int64_t it = 0; it < kIters; ++it) {
    const IterResult r = dp_iteration(*model, dp, *opt, it, 0, 1);
    const double loss = r.loss_sum / kGlobalBatch;
    out.write(reinterpret_cast<const char*>(&loss), sizeof loss);
    out.write(reinterpret_cast<const char*>(&r.grad_norm), sizeof r.grad_norm);
  }
  for (auto& p : model->params()) {
    const at::Tensor t = p.data.to(at::kFloat).contiguous();
    out.write(static_cast<const char*>(t.data_ptr()), static_cast<std::streamsize>(t.nbytes()));
  }
}

// ... and each of 2 ranks runs the same iterations on its half of the batch, checking the losses
// and grad norms as it goes (relative bounds), then returns the reference parameters.
std::vector<at::Tensor> run_against_bf16_reference(const std::string& path, core::ParallelRuntime& rt,
                                                   core::Model& model, core::DataParallel& dp, core::Optimizer& opt,
                                                   double loss_tol, double norm_tol) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << path;
  for (int64_t it = 0; it < kIters; ++it) {
    const IterResult r = dp_iteration(model, dp, opt, it, rt.dp_rank(), 2);
    at::Tensor loss = at::full({1}, r.loss_sum, at::kDouble);
    rt.group("dp").all_reduce(loss);
    double ref_loss = 0, ref_norm = 0;
    in.read(reinterpret_cast<char*>(&ref_loss), sizeof ref_loss);
    in.read(reinterpret_cast<char*>(&ref_norm), sizeof ref_norm);
    EXPECT_NEAR(loss.item<double>() / kGlobalBatch, ref_loss, loss_tol * ref_loss) << "iteration " << it;
    EXPECT_NEAR(r.grad_norm, ref_norm, norm_tol * ref_norm) << "iteration " << it;
  }
  dp.wait_param_gather();
  std::vector<at::Tensor> refs;
  for (const auto& p : model.params()) {
    refs.push_back(at::empty(p.data.sizes(), at::kFloat));
    in.read(static_cast<char*>(refs.back().data_ptr()), static_cast<std::streamsize>(refs.back().nbytes()));
  }
  EXPECT_TRUE(in.good());
  return refs;
}

// Megatron's store_param_remainders under the distributed optimizer: each rank keeps its shard of
// the fp32 masters as the bf16 parameters plus int16 remainders. Two ranks against one process
// with fp32 masters (DataParallel of size 1 in the parent): the same losses and grad norms (bf16
// rounding aside), the same parameters, and 2 + 4 + (2 + 8) / 2 bytes per parameter.
std::string bf16_ref_file() { return mp::shared_dir() + "/reference_bf16.bin"; }

TEST(DpMultiprocess, Dp2DistributedOptimizerParamRemaindersEqualOneProcess) {
  if (!mp::is_worker()) {
    write_bf16_reference(bf16_ref_file(), {});  // fp32 masters
    mp::run_workers(2);
    return;
  }
  auto& rt = init_two_ranks();
  auto model = tiny_gpt(0, {kDLBfloat, 16, 1});
  core::DataParallelOptions o;
  o.bucket_size = 2000;
  o.overlap_grad_reduce = true;
  o.use_distributed_optimizer = true;
  o.store_param_remainders = true;
  core::DataParallel dp({model.get()}, o);
  auto opt = adamw();
  dp.setup_optimizer(*opt);
  const auto refs = run_against_bf16_reference(bf16_ref_file(), rt, *model, dp, *opt, 1e-3, 1e-2);
  const auto params = model->params();
  for (size_t i = 0; i < params.size() && i < refs.size(); ++i) {
    // Most elements bit for bit; a summation order that differs across ranks may move a few by
    // one bf16 step (~4e-3 relative).
    const at::Tensor diff = (params[i].data.to(at::kFloat) - refs[i]).abs();
    EXPECT_LE(diff.max().item<double>(), 1e-2 * std::max(1.0, refs[i].abs().max().item<double>())) << params[i].name;
    EXPECT_LE(diff.gt(0).to(at::kDouble).mean().item<double>(), 0.05) << params[i].name;
  }

  const core::DataParallelMemory m = dp.memory(opt.get());
  const double n = static_cast<double>(m.num_params);
  EXPECT_NEAR(static_cast<double>(m.master_bytes), 2 * n / 2, 16.0);  // int16 remainders, sharded
  EXPECT_NEAR(m.bytes_per_param(), 6.0 + 10.0 / 2, 0.05);
  // The optimizer state a checkpoint stores: this rank's shard of the fp32 masters, composed.
  int64_t masters = 0;
  dp.visit_optimizer_state(*opt, [&](const std::string& name, at::Tensor t) {
    if (name.size() > 12 && name.compare(name.size() - 12, 12, ".fp32_master") == 0) {
      EXPECT_EQ(t.scalar_type(), at::kFloat) << name;
      masters += t.numel();
    }
  });
  EXPECT_NEAR(static_cast<double>(masters), n / 2, 16.0);
  if (rt.rank() == 0)
    std::printf("[dp] bf16 + distributed optimizer + param remainders, d = 2: %.3f bytes/param\n", m.bytes_per_param());
  rt.shutdown();
}

// Megatron's --main-grads-dtype bf16: the gradient buffers in bf16 (the weight gradients land
// there, the reduce-scatter and AdamW read them). Two ranks (distributed optimizer, remainders,
// overlapped buckets) against one process with the same settings: the same losses and grad norms
// and parameters up to bf16 rounding, 2 + 2 + (2 + 8) / 2 bytes per parameter.
std::string bf16_grads_ref_file() { return mp::shared_dir() + "/reference_bf16_grads.bin"; }

TEST(DpMultiprocess, Dp2Bf16MainGradsEqualOneProcess) {
  core::DataParallelOptions o;
  o.store_param_remainders = true;
  o.main_grads_dtype = at::kBFloat16;
  if (!mp::is_worker()) {
    write_bf16_reference(bf16_grads_ref_file(), o);  // the same settings, one process
    mp::run_workers(2);
    return;
  }
  auto& rt = init_two_ranks();
  auto model = tiny_gpt(0, {kDLBfloat, 16, 1});
  o.bucket_size = 2000;
  o.overlap_grad_reduce = true;
  o.use_distributed_optimizer = true;
  core::DataParallel dp({model.get()}, o);
  auto opt = adamw();
  dp.setup_optimizer(*opt);
  const auto refs = run_against_bf16_reference(bf16_grads_ref_file(), rt, *model, dp, *opt, 1e-3, 2e-2);
  const auto params = model->params();
  for (size_t i = 0; i < params.size() && i < refs.size(); ++i) {
    // Each rank's gradients are rounded to bf16 before the sum (the one process rounds the sum),
    // so the fp32 masters differ below a bf16 step and many bf16 parameters by one step (up to
    // ~70% of a tensor here): bound the size of the differences, not their count.
    const at::Tensor diff = (params[i].data.to(at::kFloat) - refs[i]).abs();
    const double scale = std::max(1.0, refs[i].abs().max().item<double>());
    EXPECT_LE(diff.max().item<double>(), 2e-2 * scale) << params[i].name;
    EXPECT_LE(diff.mean().item<double>(), 2e-3 * scale) << params[i].name;
  }
  const core::DataParallelMemory m = dp.memory(opt.get());
  EXPECT_EQ(m.grad_buffer_bytes, 2 * dp.plan(0).numel);
  EXPECT_NEAR(m.bytes_per_param(), 4.0 + 10.0 / 2, 0.05);
  if (rt.rank() == 0)
    std::printf("[dp] bf16 main grads + distributed optimizer + param remainders, d = 2: %.3f bytes/param\n",
                m.bytes_per_param());
  rt.shutdown();
}

// The first and last stage must flag their tied embeddings alike: a mismatch is an error on both
// ranks at construction instead of a hang in finish_grad_sync.
TEST(DpMultiprocess, MismatchedSharedEmbeddingsAcrossStagesAreAnError) {
  if (!mp::is_worker()) {
    mp::run_workers(2);
    return;
  }
  core::ParallelSizes sizes;
  sizes.world = 2;
  sizes.pp = 2;
  auto& rt = core::ParallelRuntime::get();
  rt.init(sizes, /*use_cuda=*/false, std::chrono::seconds(60));
  ASSERT_EQ(rt.group("embedding").size(), 2);
  // metadata is all DataParallel sees: rank 0 flags its (tied) embeddings, rank 1 is untied
  auto model = tiny_gpt(0, {kDLFloat, 32, 1}, rt.pp_rank() == 0 ? "" : "untie_embeddings_and_output_weights = true\n");
  try {
    core::DataParallel dp({model.get()}, {});
    ADD_FAILURE() << "expected an error";
  } catch (const core::Error& e) {
    EXPECT_NE(std::string(e.what()).find("different tied embeddings"), std::string::npos) << e.what();
  }
  rt.shutdown();
}
