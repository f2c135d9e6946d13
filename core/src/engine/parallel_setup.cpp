// A run's parallel layout (see parallel_setup.h).
#include "megahost/core/engine/parallel_setup.h"

#include <spdlog/spdlog.h>

#include <chrono>

#include "megahost/core/error.h"
#include "megahost/core/host_services.h"
#include "megahost/core/parallel/world.h"

namespace megahost::core {

std::string ParallelSetup::layout() const {
  return cat("tp", sizes.tp, ".pp", sizes.pp, ".cp", sizes.cp, ".dp", sizes.dp());
}

ParallelSetup start_parallel(const Recipe& r, bool use_cuda) {
  const WorldEnv env = read_world_env();
  ParallelSetup p;
  p.rank = env.rank;
  p.world = env.world_size;
  p.local_rank = env.local_rank;
  p.sizes.world = env.world_size;
  p.sizes.tp = static_cast<int>(r.get_int("parallel", "tensor_model_parallel_size"));
  p.sizes.pp = static_cast<int>(r.get_int("parallel", "pipeline_model_parallel_size"));
  p.sizes.cp = static_cast<int>(r.get_int("parallel", "context_parallel_size"));
  p.sizes.ep = static_cast<int>(r.get_int("parallel", "expert_model_parallel_size"));
  p.sizes.expert_tp = p.sizes.tp;  // Megatron's default expert_tensor_parallel_size
  // Megatron's --use-tp-pp-dp-mapping: data parallel varies slowest.
  if (r.get_bool("parallel", "use_tp_pp_dp_mapping")) p.sizes.order = "tp-cp-ep-pp-dp";
  p.layers_per_virtual_stage = r.get_int("parallel", "num_layers_per_virtual_pipeline_stage");
  p.sequence_parallel = r.get_bool("parallel", "sequence_parallel");

  const int model_parallel = p.sizes.tp * p.sizes.pp * p.sizes.cp;
  MH_CORE_CHECK(p.world % model_parallel == 0, r.where("parallel", "tensor_model_parallel_size"),
                ": world size (", p.world, ") is not divisible by tensor_model_parallel_size (", p.sizes.tp,
                ") x pipeline_model_parallel_size (", p.sizes.pp, ") x context_parallel_size (", p.sizes.cp,
                ")\nHINT: launch a multiple of ", model_parallel, " ranks (megahost launch --nproc-per-node N -- run "
                "...), or lower the parallel sizes");
  try {
    validate(p.sizes);
  } catch (const Error& e) {
    throw Error(cat(r.where("parallel", "tensor_model_parallel_size"), ": ", e.what()));
  }
  const std::string backend = r.get_string("parallel", "distributed_backend");
  MH_CORE_CHECK(backend == "auto" || (backend == "nccl") == use_cuda, r.where("parallel", "distributed_backend"),
                ": distributed_backend '", backend, "' does not fit training on ", use_cuda ? "CUDA" : "the CPU",
                "\nHINT: nccl moves CUDA tensors, gloo CPU tensors; 'auto' picks the right one");

  if (p.many()) {
    const auto timeout = std::chrono::minutes(r.get_int("parallel", "distributed_timeout_minutes"));
    ParallelRuntime::get().init(env, p.sizes, use_cuda, timeout);
    auto& rt = ParallelRuntime::get();
    p.tp_rank = rt.tp_rank();
    p.pp_rank = rt.pp_rank();
    p.dp_rank = rt.dp_rank();
    p.cp_rank = rt.cp_rank();
    spdlog::info("parallel layout {} over {} ranks ({}): rank {} is tp {} pp {} cp {} dp {}", p.layout(), p.world,
                 env.source, p.rank, p.tp_rank, p.pp_rank, p.cp_rank, p.dp_rank);
  }
  return p;
}

double reduce_logged_loss(double local_mean, bool has_loss) {
  auto& rt = ParallelRuntime::get();
  if (!rt.initialized()) return local_mean;
  const at::Device dev = rt.use_cuda() ? at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(rt.local_rank()))
                                       : at::Device(at::kCPU);
  at::Tensor v = at::full({1}, has_loss ? local_mean : 0.0, at::TensorOptions().dtype(at::kDouble).device(dev));
  if (has_loss) rt.group("dp").all_reduce(v, ReduceOp::Avg);
  rt.group("pp").all_reduce(v, ReduceOp::Sum);  // only the last stage contributes
  return v.item<double>();
}

bool reduce_any_flag(bool flag) {
  auto& rt = ParallelRuntime::get();
  if (!rt.initialized()) return flag;
  const at::Device dev = rt.use_cuda() ? at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(rt.local_rank()))
                                       : at::Device(at::kCPU);
  at::Tensor v = at::full({1}, flag ? 1.0 : 0.0, at::TensorOptions().dtype(at::kFloat).device(dev));
  rt.group("world").all_reduce(v, ReduceOp::Max);
  return v.item<float>() > 0;
}

void world_barrier() {
  auto& rt = ParallelRuntime::get();
  if (rt.initialized()) rt.group("world").barrier();
}

}  // namespace megahost::core
