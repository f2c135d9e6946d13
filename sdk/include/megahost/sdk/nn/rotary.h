// megahost SDK — rotary position embedding, Megatron-Core's convention:
//
//   dim      = int(kv_channels * rotary_percent)          (the leading dims of each head rotate)
//   inv_freq = 1 / rotary_base^(arange(0, dim, 2) / dim)   [dim/2]
//   freqs    = cat(pos ⊗ inv_freq, pos ⊗ inv_freq)        [s, dim]   (halves, not interleaved)
//   rotate_half(x) = cat(-x[..., dim/2:], x[..., :dim/2])
//   x_rot    = x * cos(freqs) + rotate_half(x) * sin(freqs);  dims past `dim` pass through
//
// With Llama 3.1's frequency scaling (RopeScaling) inv_freq is rescaled before use.
//
// Positions are 0..s-1 for every sequence (Megatron's GPTModel ignores position_ids for rope);
// under context parallelism, the GLOBAL positions of this cp rank's two chunks (Megatron's
// get_pos_emb_on_this_cp_rank), so the rotation does not depend on the layout.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <optional>

#include "megahost/sdk/parallel/mappings.h"

namespace megahost::sdk::nn {

// Llama 3.1's frequency scaling (Megatron's --use-rope-scaling / --rope-scaling-factor; Hugging
// Face's rope_scaling {"rope_type": "llama3"}): with wavelength w = 2 pi / inv_freq, frequencies
// whose w exceeds original_max_position_embeddings / low_freq_factor are divided by factor, those
// under original_max_position_embeddings / high_freq_factor are kept, and the band between is
// blended: (1 - a) f / factor + a f with a = (original / w - low) / (high - low). Megatron fixes
// low 1, high 4, original 8192 (Llama 3.1, 3.2 and 3.3 all use them).
struct RopeScaling {
  double factor = 8.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  double original_max_position_embeddings = 8192.0;
};

// inv_freq [dim/2] float32 -> its Llama-3 scaled frequencies, float32 as Megatron computes them.
at::Tensor llama3_scaled_frequencies(const at::Tensor& inv_freq, const RopeScaling& scaling);

class RotaryEmbedding {
 public:
  // seq_len_interpolation_factor: positions divided by it (Megatron's
  // --rotary-seq-len-interpolation-factor, Hugging Face's "linear" rope_scaling); 1 = none.
  RotaryEmbedding(int64_t kv_channels, double rotary_percent, double rotary_base,
                  std::shared_ptr<const parallel::ParallelContext> parallel = nullptr,
                  std::optional<RopeScaling> scaling = std::nullopt, double seq_len_interpolation_factor = 1.0);
  // Angles for this rank's seq_len positions (0..seq_len-1 without context parallelism):
  // [s, 1, 1, dim] float32 on `device`.
  at::Tensor forward(int64_t seq_len, at::Device device) const;
  // Angles for the given positions [s] (int64): [s, 1, 1, dim] float32.
  at::Tensor for_positions(const at::Tensor& positions) const;
  int64_t dim() const { return dim_; }

 private:
  int64_t dim_;
  double base_;
  std::shared_ptr<const parallel::ParallelContext> parallel_;
  std::optional<RopeScaling> scaling_;
  double seq_len_interpolation_factor_;
};

// t [s, b, heads, head_dim]; freqs [s, 1, 1, dim] with dim <= head_dim. cos/sin are computed
// in float32 and cast to t's dtype, as Megatron does.
at::Tensor apply_rotary_pos_emb(const at::Tensor& t, const at::Tensor& freqs);

}  // namespace megahost::sdk::nn
