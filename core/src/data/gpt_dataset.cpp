#include "megahost/core/data/gpt_dataset.h"

#include <algorithm>

#include "megahost/core/data/numpy_math.h"
#include "megahost/core/error.h"

namespace megahost::core::data {

GPTDataset::GPTDataset(const TokenSource& source, SequenceRange range, const GPTIndexConfig& cfg,
                       std::string what)
    : source_(source), range_(range), cfg_(cfg), what_(std::move(what)) {
  indices_ = build_gpt_indices(source.sequence_lengths(), range, cfg, what_);
}

GPTDataset::GPTDataset(const TokenSource& source, SequenceRange range, const GPTIndexConfig& cfg,
                       std::string what, GPTIndices indices)
    : source_(source), range_(range), cfg_(cfg), what_(std::move(what)), indices_(std::move(indices)) {
  MH_CORE_CHECK(indices_.sample_index.size() == 2 * static_cast<size_t>(indices_.plan.num_samples + 1) &&
                    indices_.shuffle_index.size() == static_cast<size_t>(indices_.plan.num_samples),
                what_, ": indices do not match their epoch plan (", indices_.plan.num_samples, " samples)");
}

int64_t GPTDataset::sample(int64_t i, int64_t* out, int64_t pad) const {
  MH_CORE_CHECK(i >= 0 && i < size(), what_, ": sample ", i, " out of range [0, ", size(), ")");
  const auto& lengths = source_.sequence_lengths();
  const auto& doc = indices_.document_index;
  const IndexArray& rows = indices_.sample_index;
  const int64_t extra = cfg_.extra();
  const int64_t capacity = sample_length();

  const auto k = static_cast<size_t>(indices_.shuffle_index[static_cast<size_t>(i)]);
  const int64_t first = rows[2 * k], first_offset = rows[2 * k + 1];
  const int64_t last = rows[2 * k + 2], last_offset = rows[2 * k + 3];

  // Sample k spans document-index positions [first, last]: from first_offset in the first,
  // whole sequences in between, and up to last_offset + extra tokens of the last.
  int64_t written = 0;
  auto take = [&](int64_t pos, int64_t offset, int64_t count) {
    MH_CORE_CHECK(count >= 0 && written + count <= capacity, what_, ": sample ", i,
                  " would take ", written + count, " tokens, more than ", capacity,
                  " (corrupt indices?)");
    source_.read(static_cast<uint64_t>(doc[static_cast<size_t>(pos)]), static_cast<uint64_t>(offset),
                 static_cast<uint64_t>(count), out + written);
    written += count;
  };
  if (first == last) {
    take(first, first_offset, last_offset - first_offset + extra);
  } else {
    for (int64_t pos = first; pos <= last; ++pos) {
      const int64_t offset = pos == first ? first_offset : 0;
      const int64_t count =
          pos < last ? lengths[static_cast<size_t>(doc[static_cast<size_t>(pos)])] - offset
                     : last_offset + extra;
      take(pos, offset, count);
    }
  }
  std::fill(out + written, out + capacity, pad);
  return written;
}

BlendedDataset::BlendedDataset(std::vector<const GPTDataset*> sources,
                               const std::vector<double>& weights, int64_t size)
    : sources_(std::move(sources)) {
  MH_CORE_CHECK(!sources_.empty(), "blend: no sources");
  MH_CORE_CHECK(sources_.size() == weights.size(), "blend: ", sources_.size(), " sources but ",
                weights.size(), " weights");
  for (const GPTDataset* s : sources_) {
    MH_CORE_CHECK(s != nullptr, "blend: null source");
    MH_CORE_CHECK(s->sample_length() == sources_[0]->sample_length(), "blend: ", s->what(),
                  " has samples of ", s->sample_length(), " tokens, ", sources_[0]->what(),
                  " of ", sources_[0]->sample_length(), "; HINT: one seq_length for all sources");
  }
  // Megatron's BlendedDataset normalises the (already normalised) weights once more.
  weights_ = normalize_weights(weights, "blend weights");
  indices_ = build_blend_indices(weights_, size);
  std::vector<int64_t> needed(sources_.size(), 0);
  for (size_t s = 0; s < indices_.dataset_index.size(); ++s) {
    const size_t d = static_cast<size_t>(indices_.dataset_index[s]);
    needed[d] = std::max(needed[d], indices_.dataset_sample_index[s] + 1);
  }
  for (size_t d = 0; d < sources_.size(); ++d)
    MH_CORE_CHECK(needed[d] <= sources_[d]->size(), "blend: ", sources_[d]->what(), " holds ",
                  sources_[d]->size(), " samples but the blend of ", size, " takes ", needed[d],
                  " from it; HINT: build each source with plan_blend(...).requested_samples");
}

int64_t BlendedDataset::sample(int64_t i, int64_t* out, int64_t pad) const {
  MH_CORE_CHECK(i >= 0 && i < size(), "blend: sample ", i, " out of range [0, ", size(), ")");
  const auto d = static_cast<size_t>(indices_.dataset_index[static_cast<size_t>(i)]);
  return sources_[d]->sample(indices_.dataset_sample_index[static_cast<size_t>(i)], out, pad);
}

}  // namespace megahost::core::data
