// megahost SDK — rotary position embedding (see megahost/sdk/nn/rotary.h).
#include "megahost/sdk/nn/rotary.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/cos.h>
#include <ATen/ops/outer.h>
#include <ATen/ops/pow.h>
#include <ATen/ops/sin.h>
#include <ATen/ops/where.h>

#include <cmath>

#include "megahost/sdk/error.h"
#include "megahost/sdk/parallel/context_parallel.h"

namespace megahost::sdk::nn {

at::Tensor llama3_scaled_frequencies(const at::Tensor& inv_freq, const RopeScaling& c) {
  const double low_wavelen = c.original_max_position_embeddings / c.low_freq_factor;
  const double high_wavelen = c.original_max_position_embeddings / c.high_freq_factor;
  const at::Tensor wavelen = (2 * M_PI) / inv_freq;
  // long wavelengths divided by the factor, short ones kept
  const at::Tensor scaled = at::where(wavelen > low_wavelen, inv_freq / c.factor, inv_freq);
  // between them a blend of the two, weighted by where the wavelength falls
  const at::Tensor a = (c.original_max_position_embeddings / wavelen - c.low_freq_factor) /
                       (c.high_freq_factor - c.low_freq_factor);
  const at::Tensor smoothed = (1 - a) * scaled / c.factor + a * scaled;
  const at::Tensor medium = (wavelen >= high_wavelen).logical_and(wavelen <= low_wavelen);
  return at::where(medium, smoothed, scaled);
}

RotaryEmbedding::RotaryEmbedding(int64_t kv_channels, double rotary_percent, double rotary_base,
                                 std::shared_ptr<const parallel::ParallelContext> parallel,
                                 std::optional<RopeScaling> scaling, double seq_len_interpolation_factor)
    : dim_(static_cast<int64_t>(static_cast<double>(kv_channels) * rotary_percent)),
      base_(rotary_base),
      parallel_(std::move(parallel)),
      scaling_(scaling),
      seq_len_interpolation_factor_(seq_len_interpolation_factor) {
  MH_CHECK(seq_len_interpolation_factor > 0, MH_ERR_INVALID_ARG, "rotary seq_len_interpolation_factor = ",
           seq_len_interpolation_factor, " must be > 0\nHINT: 1 leaves the positions as they are");
  MH_CHECK(dim_ > 0 && dim_ % 2 == 0 && dim_ <= kv_channels, MH_ERR_INVALID_ARG, "rotary dim int(kv_channels * ",
           "rotary_percent) = ", dim_, " must be even and in (0, kv_channels = ", kv_channels, "]",
           "\nHINT: pick rotary_percent so that kv_channels * rotary_percent is an even integer");
}

at::Tensor RotaryEmbedding::forward(int64_t seq_len, at::Device device) const {
  const int cp_size = parallel_ ? parallel_->cp.size() : 1;
  const int cp_rank = parallel_ ? parallel_->cp.rank() : 0;
  return for_positions(parallel::context_parallel_positions(seq_len, cp_rank, cp_size, device));
}

at::Tensor RotaryEmbedding::for_positions(const at::Tensor& positions) const {
  const int64_t s = positions.size(0);
  const auto f32 = at::TensorOptions().dtype(at::kFloat).device(positions.device());
  const at::Tensor exponent = at::arange(0, dim_, 2, f32) / static_cast<double>(dim_);  // [dim/2]
  at::Tensor inv_freq = 1.0 / at::pow(base_, exponent);                                 // [dim/2]
  if (scaling_) inv_freq = llama3_scaled_frequencies(inv_freq, *scaling_);
  at::Tensor pos = positions.to(at::kFloat);                                            // [s]
  if (seq_len_interpolation_factor_ != 1.0) pos = pos * (1.0 / seq_len_interpolation_factor_);
  const at::Tensor freqs = at::outer(pos, inv_freq);                                    // [s, dim/2]
  return at::cat({freqs, freqs}, -1).view({s, 1, 1, dim_});                            // [s, 1, 1, dim]
}

namespace {
at::Tensor rotate_half(const at::Tensor& x) {  // [..., d] -> cat(-x2, x1)
  const int64_t half = x.size(-1) / 2;
  return at::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
}
}  // namespace

at::Tensor apply_rotary_pos_emb(const at::Tensor& t, const at::Tensor& freqs) {
  const int64_t rot = freqs.size(-1);
  const at::Tensor cos = at::cos(freqs).to(t.scalar_type());
  const at::Tensor sin = at::sin(freqs).to(t.scalar_type());
  const at::Tensor t_rot = t.narrow(-1, 0, rot);
  const at::Tensor rotated = t_rot * cos + rotate_half(t_rot) * sin;
  if (rot == t.size(-1)) return rotated;
  return at::cat({rotated, t.narrow(-1, rot, t.size(-1) - rot)}, -1);
}

}  // namespace megahost::sdk::nn
