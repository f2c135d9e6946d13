// megahost SDK — context parallelism's sequence layout (Megatron-Core's load-balanced split).
//
// The host cuts each micro-batch's sequence into 2*cp chunks; cp rank r holds chunks r and
// 2*cp-1-r, concatenated (so every rank gets the same share of causal attention work).
//   cp = 2, s = 8: rank 0 holds positions 0 1 6 7, rank 1 holds 2 3 4 5.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace megahost::sdk::parallel {

// Global positions of rank cp_rank's local sequence: [local_len] int64 (local_len = s / cp).
at::Tensor context_parallel_positions(int64_t local_len, int cp_rank, int cp_size, at::Device device);
// Global positions of the sequence all-gathered over the cp group (rank order): [cp * local_len].
at::Tensor context_parallel_gathered_positions(int64_t local_len, int cp_size, at::Device device);
// What the host does: rank cp_rank's part of t along `dim` (size s) -> size s / cp.
at::Tensor context_parallel_slice(const at::Tensor& t, int64_t dim, int cp_rank, int cp_size);

}  // namespace megahost::sdk::parallel
