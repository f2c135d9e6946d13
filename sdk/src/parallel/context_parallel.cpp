// megahost SDK — context-parallel layout (see megahost/sdk/parallel/context_parallel.h).
#include "megahost/sdk/parallel/context_parallel.h"

#include <ATen/ops/arange.h>
#include <ATen/ops/cat.h>

#include <vector>

#include "megahost/sdk/error.h"

namespace megahost::sdk::parallel {

at::Tensor context_parallel_positions(int64_t local_len, int cp_rank, int cp_size, at::Device device) {
  const auto opts = at::TensorOptions().dtype(at::kLong).device(device);
  if (cp_size == 1) return at::arange(local_len, opts);
  MH_CHECK(local_len % 2 == 0, MH_ERR_INVALID_ARG, "context parallel: the local sequence length ", local_len,
           " is not two equal chunks\nHINT: seq_length must be divisible by 2 * context_parallel_size");
  const int64_t chunk = local_len / 2;
  const int64_t second = 2 * cp_size - 1 - cp_rank;
  return at::cat({at::arange(cp_rank * chunk, (cp_rank + 1) * chunk, opts),
                  at::arange(second * chunk, (second + 1) * chunk, opts)});
}

at::Tensor context_parallel_gathered_positions(int64_t local_len, int cp_size, at::Device device) {
  std::vector<at::Tensor> parts;
  for (int r = 0; r < cp_size; ++r) parts.push_back(context_parallel_positions(local_len, r, cp_size, device));
  return at::cat(parts);
}

at::Tensor context_parallel_slice(const at::Tensor& t, int64_t dim, int cp_rank, int cp_size) {
  if (cp_size == 1) return t;
  MH_CHECK(t.size(dim) % (2 * cp_size) == 0, MH_ERR_INVALID_ARG, "context parallel: dim ", dim, " of ", t.sizes(),
           " does not split into 2 * cp = ", 2 * cp_size, " chunks");
  const auto chunks = t.chunk(2 * cp_size, dim);
  return at::cat({chunks[cp_rank], chunks[2 * cp_size - 1 - cp_rank]}, dim);
}

}  // namespace megahost::sdk::parallel
