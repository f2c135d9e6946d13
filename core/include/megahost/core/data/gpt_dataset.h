// megahost core — GPT samples over a token source, and blends of them (Megatron's GPTDataset
// and BlendedDataset).
//
//   GPTIndexConfig cfg; cfg.seq_length = 1024; cfg.num_samples = n; cfg.seed = 1234;
//   GPTDataset ds(source, range, cfg, "corpus (train)");
//   std::vector<int64_t> text(ds.sample_length());   // L + 1
//   ds.sample(i, text.data());   // tokens = text[0, L), labels = text[1, L + 1)
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "megahost/core/data/blend.h"
#include "megahost/core/data/gpt_indices.h"
#include "megahost/core/data/token_source.h"

namespace megahost::core::data {

class GPTDataset {
 public:
  // Builds the three indices for `range` of `source` (which must outlive the dataset).
  // `what` names the dataset in errors and logs, e.g. "corpus_text_document (train)".
  GPTDataset(const TokenSource& source, SequenceRange range, const GPTIndexConfig& cfg,
             std::string what);
  // Over indices built or loaded elsewhere (load_or_build_gpt_indices: the on-disk cache).
  GPTDataset(const TokenSource& source, SequenceRange range, const GPTIndexConfig& cfg, std::string what,
             GPTIndices indices);

  int64_t size() const { return indices_.plan.num_samples; }  // N
  int64_t sample_length() const { return cfg_.seq_length + cfg_.extra(); }
  // Writes sample i (after the shuffle) into out[0, sample_length()): the documents it spans,
  // walked from the sample index as Megatron does. Returns how many tokens are real; the rest
  // (only in a kept partial last sample) are set to `pad`. Thread-safe.
  int64_t sample(int64_t i, int64_t* out, int64_t pad = -1) const;

  const GPTIndices& indices() const { return indices_; }
  const GPTIndexConfig& config() const { return cfg_; }
  SequenceRange range() const { return range_; }
  const std::string& what() const { return what_; }

 private:
  const TokenSource& source_;
  SequenceRange range_;
  GPTIndexConfig cfg_;
  std::string what_;
  GPTIndices indices_;
};

class BlendedDataset {
 public:
  // Blends `sources` (outliving this) with `weights` over `size` samples. Each source must hold
  // at least the samples the blend takes from it: build source d with
  // plan_blend(...).requested_samples[d] samples. Throws core::Error naming the short source.
  BlendedDataset(std::vector<const GPTDataset*> sources, const std::vector<double>& weights,
                 int64_t size);

  int64_t size() const { return static_cast<int64_t>(indices_.dataset_index.size()); }
  int64_t sample_length() const { return sources_[0]->sample_length(); }
  int64_t sample(int64_t i, int64_t* out, int64_t pad = -1) const;
  // Which source and which of its samples blended sample i is.
  int source_of(int64_t i) const { return indices_.dataset_index.at(static_cast<size_t>(i)); }
  const BlendIndices& indices() const { return indices_; }
  const std::vector<double>& weights() const { return weights_; }

 private:
  std::vector<const GPTDataset*> sources_;
  std::vector<double> weights_;
  BlendIndices indices_;
};

}  // namespace megahost::core::data
