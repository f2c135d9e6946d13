// megahost core — micro-batches as the model sees them: which samples a data-parallel rank
// reads (Megatron's MegatronPretrainingSampler), the GPT batch tensors, and the context-parallel
// slice of a sequence.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "megahost/core/engine/samples.h"

namespace megahost::core {

using MicroBatchTensors = std::vector<std::pair<std::string, at::Tensor>>;

// The first sample of micro-batch `micro` of an iteration that starts at `consumed`: Megatron's
// sampler walks the global batch in slices of micro_batch_size x dp and data-parallel rank d
// reads part d of each slice. With dp = 1 it is consumed + micro * micro_batch_size.
uint64_t micro_batch_first_sample(uint64_t consumed, int64_t micro, int64_t micro_batch_size, int64_t dp,
                                  int64_t dp_rank);

// tokens / labels [b, s] int64, loss_mask [b, s] float32 (0 on EOD tokens when eod_mask is set),
// position_ids [b, s] int64, for samples first .. first + count - 1 (modulo the source size).
MicroBatchTensors make_gpt_batch(const SampleSource& src, uint64_t first, int64_t count, int64_t seq_length,
                                 std::optional<int32_t> eod_mask, const at::Device& device);

// A host tensor on `device` without waiting for the GPU: on CUDA through page-locked memory, a
// copy queued on the current stream (a pageable copy synchronizes the stream: the GPU would sit
// idle from the end of the optimizer step until the host queued the next forward). Elsewhere
// t.to(device).
at::Tensor to_device_async(const at::Tensor& t, const at::Device& device);

// Context parallelism with load balance for causal attention: the sequence is cut into
// 2 x cp chunks and cp rank r keeps chunks r and 2cp-1-r, so every rank gets as much attention
// work as the others. Every [b, s] tensor of the batch becomes [b, s / cp]; position_ids keep
// the global positions. Identity when cp == 1.
MicroBatchTensors slice_for_context_parallel(const MicroBatchTensors& batch, int64_t cp, int64_t cp_rank);

}  // namespace megahost::core
