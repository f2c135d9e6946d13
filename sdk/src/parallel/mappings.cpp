// megahost SDK — autograd regions (see megahost/sdk/parallel/mappings.h).
#include "megahost/sdk/parallel/mappings.h"

#include <ATen/ops/cat.h>
#include <torch/csrc/autograd/custom_function.h>

#include "megahost/sdk/error.h"

namespace megahost::sdk::parallel {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The group rides in saved_data as an address (it outlives the graph: see mappings.h).
void save_group(AutogradContext* ctx, const DistGroup* g) { ctx->saved_data["group"] = reinterpret_cast<int64_t>(g); }
const DistGroup& saved_group(AutogradContext* ctx) {
  return *reinterpret_cast<const DistGroup*>(ctx->saved_data["group"].toInt());
}

at::Tensor all_reduced(const at::Tensor& x, const DistGroup& g) {
  at::Tensor out = x.clone(at::MemoryFormat::Contiguous);
  g.all_reduce(out);
  return out;
}
at::Tensor keep_last_dim_chunk(const at::Tensor& x, const DistGroup& g) {
  MH_CHECK(x.size(-1) % g.size() == 0, MH_ERR_INVALID_ARG, "tensor-parallel split: last dim of ", x.sizes(),
           " is not divisible by ", g.size());
  return x.chunk(g.size(), -1)[g.rank()].contiguous();
}
at::Tensor gather_last_dim(const at::Tensor& x, const DistGroup& g) {
  const at::Tensor stacked = g.all_gather(x.unsqueeze(0));  // [size, ..., n]
  return at::cat(stacked.unbind(0), -1);                    // [..., size * n]
}
at::Tensor keep_first_dim_chunk(const at::Tensor& x, const DistGroup& g) {
  MH_CHECK(x.size(0) % g.size() == 0, MH_ERR_INVALID_ARG, "sequence-parallel split: dim 0 of ", x.sizes(),
           " is not divisible by ", g.size(),
           "\nHINT: seq_length must be divisible by tensor_model_parallel_size under sequence parallelism");
  return x.chunk(g.size(), 0)[g.rank()].contiguous();
}

struct CopyTo : torch::autograd::Function<CopyTo> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const DistGroup* g) {
    save_group(ctx, g);
    return x;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad) {
    return {all_reduced(grad[0], saved_group(ctx)), at::Tensor()};
  }
};

struct ReduceFrom : torch::autograd::Function<ReduceFrom> {
  static at::Tensor forward(AutogradContext*, const at::Tensor& x, const DistGroup* g) { return all_reduced(x, *g); }
  static variable_list backward(AutogradContext*, variable_list grad) { return {grad[0], at::Tensor()}; }
};

struct ScatterLast : torch::autograd::Function<ScatterLast> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const DistGroup* g) {
    save_group(ctx, g);
    return keep_last_dim_chunk(x, *g);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad) {
    return {gather_last_dim(grad[0], saved_group(ctx)), at::Tensor()};
  }
};

struct GatherLast : torch::autograd::Function<GatherLast> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const DistGroup* g) {
    save_group(ctx, g);
    return gather_last_dim(x, *g);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad) {
    return {keep_last_dim_chunk(grad[0], saved_group(ctx)), at::Tensor()};
  }
};

struct ScatterFirst : torch::autograd::Function<ScatterFirst> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const DistGroup* g) {
    save_group(ctx, g);
    return keep_first_dim_chunk(x, *g);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad) {
    return {saved_group(ctx).all_gather(grad[0]), at::Tensor()};
  }
};

struct GatherFirst : torch::autograd::Function<GatherFirst> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const DistGroup* g, bool tp_output_grad) {
    save_group(ctx, g);
    ctx->saved_data["reduce"] = tp_output_grad;
    return g->all_gather(x);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad) {
    const DistGroup& g = saved_group(ctx);
    const at::Tensor dx =
        ctx->saved_data["reduce"].toBool() ? g.reduce_scatter(grad[0]) : keep_first_dim_chunk(grad[0], g);
    return {dx, at::Tensor(), at::Tensor()};
  }
};

struct ReduceScatterFirst : torch::autograd::Function<ReduceScatterFirst> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const DistGroup* g) {
    save_group(ctx, g);
    return g->reduce_scatter(x);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad) {
    return {saved_group(ctx).all_gather(grad[0]), at::Tensor()};
  }
};

}  // namespace

at::Tensor copy_to_tp_region(const at::Tensor& x, const DistGroup& g) {
  return g.size() == 1 ? x : CopyTo::apply(x, &g);
}
at::Tensor reduce_from_tp_region(const at::Tensor& x, const DistGroup& g) {
  return g.size() == 1 ? x : ReduceFrom::apply(x, &g);
}
at::Tensor scatter_to_tp_region(const at::Tensor& x, const DistGroup& g) {
  return g.size() == 1 ? x : ScatterLast::apply(x, &g);
}
at::Tensor gather_from_tp_region(const at::Tensor& x, const DistGroup& g) {
  return g.size() == 1 ? x : GatherLast::apply(x, &g);
}
at::Tensor scatter_to_sequence_parallel_region(const at::Tensor& x, const DistGroup& g) {
  return g.size() == 1 ? x : ScatterFirst::apply(x, &g);
}
at::Tensor gather_from_sequence_parallel_region(const at::Tensor& x, const DistGroup& g,
                                                bool tensor_parallel_output_grad) {
  return g.size() == 1 ? x : GatherFirst::apply(x, &g, tensor_parallel_output_grad);
}
at::Tensor reduce_scatter_to_sequence_parallel_region(const at::Tensor& x, const DistGroup& g) {
  return g.size() == 1 ? x : ReduceScatterFirst::apply(x, &g);
}

std::shared_ptr<const ParallelContext> ParallelContext::from_host(const mh_host* host, uint32_t parallel_flags) {
  auto ctx = std::make_shared<ParallelContext>();
  ctx->tp = DistGroup::from(host, "tp").value_or(DistGroup());
  ctx->cp = DistGroup::from(host, "cp").value_or(DistGroup());
  ctx->sequence_parallel = (parallel_flags & MH_PARALLEL_SEQUENCE_PARALLEL) != 0 && ctx->tp.size() > 1;
  return ctx;
}

int64_t divide(int64_t numerator, int64_t denominator, const char* what, const char* by_what) {
  MH_CHECK(denominator > 0 && numerator % denominator == 0, MH_ERR_INVALID_ARG, what, " (", numerator,
           ") is not divisible by ", by_what, " (", denominator, ")");
  return numerator / denominator;
}

}  // namespace megahost::sdk::parallel
