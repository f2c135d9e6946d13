// Pipeline stage assignment (see pipeline_layout.h). Messages are Megatron's asserts plus a HINT.
#include "megahost/core/engine/pipeline_layout.h"

#include "megahost/core/error.h"
#include "megahost/megahost.h"

namespace megahost::core {

int64_t virtual_pipeline_size(int64_t num_layers, int64_t pp, int64_t num_layers_per_virtual_stage) {
  MH_CORE_CHECK(pp >= 1, "pipeline_model_parallel_size = ", pp, " must be at least 1",
                "\nHINT: set [parallel] pipeline_model_parallel_size to a positive number of stages");
  MH_CORE_CHECK(num_layers >= 1, "num_layers = ", num_layers, " must be at least 1",
                "\nHINT: set [model] num_layers");
  MH_CORE_CHECK(num_layers % pp == 0, "number of layers should be divisible by the pipeline parallel size (",
                num_layers, " layers, pipeline_model_parallel_size = ", pp, ")",
                "\nHINT: pick a pipeline_model_parallel_size that divides num_layers");
  if (num_layers_per_virtual_stage <= 0) return 1;
  MH_CORE_CHECK(pp > 1,
                "When interleaved schedule is used, pipeline-model-parallel size should be greater than 1 "
                "(num_layers_per_virtual_pipeline_stage = ", num_layers_per_virtual_stage,
                ", pipeline_model_parallel_size = 1)",
                "\nHINT: drop num_layers_per_virtual_pipeline_stage or raise pipeline_model_parallel_size");
  const int64_t per_stage = num_layers / pp;
  MH_CORE_CHECK(per_stage % num_layers_per_virtual_stage == 0,
                "number of layers per pipeline stage must be divisible number of layers per virtual pipeline "
                "stage (", per_stage, " layers per stage, num_layers_per_virtual_pipeline_stage = ",
                num_layers_per_virtual_stage, ")",
                "\nHINT: num_layers / pipeline_model_parallel_size must be a multiple of "
                "num_layers_per_virtual_pipeline_stage");
  return per_stage / num_layers_per_virtual_stage;
}

std::vector<StageSpec> stages_for_rank(int64_t num_layers, int64_t pp, int64_t num_layers_per_virtual_stage,
                                       int64_t pp_rank) {
  const int64_t vp = virtual_pipeline_size(num_layers, pp, num_layers_per_virtual_stage);
  MH_CORE_CHECK(pp_rank >= 0 && pp_rank < pp, "pipeline rank ", pp_rank, " is outside [0, ", pp, ")",
                "\nHINT: the rank must come from the \"pp\" group");
  const int64_t per_chunk = num_layers / (pp * vp);
  std::vector<StageSpec> out;
  for (int64_t v = 0; v < vp; ++v) {
    StageSpec s;
    s.layer_offset = static_cast<int32_t>(v * (num_layers / vp) + pp_rank * per_chunk);
    s.num_layers = static_cast<int32_t>(per_chunk);
    if (v == 0 && pp_rank == 0) s.stage_flags |= MH_STAGE_FIRST;
    if (v == vp - 1 && pp_rank == pp - 1) s.stage_flags |= MH_STAGE_LAST;
    out.push_back(s);
  }
  return out;
}

void check_interleaved_microbatches(int64_t num_microbatches, int64_t pp, int64_t vp) {
  if (vp <= 1) return;
  MH_CORE_CHECK(num_microbatches % pp == 0, "number of microbatches (", num_microbatches,
                ") is not divisible by pipeline-model-parallel-size (", pp, ") when using interleaved schedule",
                "\nHINT: make global_batch_size / (micro_batch_size * data_parallel_size) a multiple of "
                "pipeline_model_parallel_size, or drop num_layers_per_virtual_pipeline_stage");
}

}  // namespace megahost::core
