// Megatron-Core GPTDataset index construction, written from its documented behaviour
// (FORMATS.md §2). Every integer division here is on non-negative values, so C++'s truncation
// equals Python's floor division.
#include "megahost/core/data/gpt_indices.h"

#include <cmath>
#include <cstdlib>
#include <limits>

#include "megahost/core/data/numpy_math.h"
#include "megahost/core/error.h"

namespace megahost::core::data {

const char* split_name(Split s) {
  switch (s) {
    case Split::Train: return "train";
    case Split::Valid: return "valid";
    default: return "test";
  }
}

std::array<double, 3> parse_split(const std::string& split) {
  // Megatron reads every run of [.0-9] as a number, whatever separates them ("949,50,1",
  // "98/2/0", "99 1").
  std::vector<double> numbers;
  size_t i = 0;
  while (i < split.size()) {
    if (!(split[i] == '.' || (split[i] >= '0' && split[i] <= '9'))) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < split.size() && (split[j] == '.' || (split[j] >= '0' && split[j] <= '9'))) ++j;
    const std::string token = split.substr(i, j - i);
    char* end = nullptr;
    const double v = std::strtod(token.c_str(), &end);
    MH_CORE_CHECK(end == token.c_str() + token.size(), "split \"", split, "\": \"", token,
                  "\" is not a number; HINT: write three weights such as \"949,50,1\"");
    numbers.push_back(v);
    i = j;
  }
  MH_CORE_CHECK(!numbers.empty() && numbers.size() <= 3, "split \"", split, "\" has ",
                numbers.size(), " numbers, expected 1 to 3 (train, valid, test); ",
                "HINT: write it as \"949,50,1\"");
  numbers.resize(3, 0.0);
  const std::vector<double> w = normalize_weights(numbers, ("split \"" + split + "\"").c_str());
  return {w[0], w[1], w[2]};
}

std::array<std::optional<SequenceRange>, 3> split_sequence_ranges(const std::string& split,
                                                                  int64_t num_sequences) {
  MH_CORE_CHECK(num_sequences >= 0, "negative number of sequences ", num_sequences);
  const std::array<double, 3> w = parse_split(split);
  // Cumulative bounds in Python float arithmetic: [0, w0, w0 + w1, w0 + w1 + w2].
  const std::array<double, 4> bound = {0.0, w[0], w[0] + w[1], (w[0] + w[1]) + w[2]};
  const double n = static_cast<double>(num_sequences);
  std::array<std::optional<SequenceRange>, 3> out;
  for (int k = 0; k < 3; ++k) {
    if (bound[k + 1] <= bound[k]) continue;  // zero weight: no dataset for this split
    // Python's round() is half-to-even: std::nearbyint under the default rounding mode.
    out[k] = SequenceRange{static_cast<int64_t>(std::nearbyint(bound[k] * n)),
                           static_cast<int64_t>(std::nearbyint(bound[k + 1] * n))};
  }
  return out;
}

EpochPlan plan_epochs(int64_t tokens_per_epoch, const GPTIndexConfig& cfg, const std::string& what) {
  MH_CORE_CHECK(cfg.seq_length >= 1, what, ": seq_length must be at least 1, got ", cfg.seq_length);
  MH_CORE_CHECK(!cfg.num_samples || *cfg.num_samples >= 0, what, ": negative number of samples ",
                *cfg.num_samples, " requested");
  MH_CORE_CHECK(tokens_per_epoch >= 0, what, ": negative token count ", tokens_per_epoch);
  const int64_t L = cfg.seq_length;
  const int64_t extra = cfg.extra();
  EpochPlan p;
  p.tokens_per_epoch = tokens_per_epoch;
  p.num_epochs = 1;
  if (cfg.num_samples) {
    MH_CORE_CHECK(tokens_per_epoch > 0, what, " has no tokens but ", *cfg.num_samples,
                  " samples were requested from it; HINT: this split is empty for this corpus "
                  "(e.g. split \"949,50,1\" over a few hundred sequences leaves test empty): change "
                  "`split`, add data, or request no samples from it (eval_iters = 0)");
    // The smallest E >= 1 with E * tokens_per_epoch >= num_samples * L + extra.
    const int64_t n = *cfg.num_samples;
    MH_CORE_CHECK(n <= (std::numeric_limits<int64_t>::max() / 4 - extra) / L, what, ": ", n,
                  " samples of ", L, " tokens overflow a 64-bit token count");
    const int64_t requested = n * L + extra;
    p.num_epochs = std::max<int64_t>(1, (requested + tokens_per_epoch - 1) / tokens_per_epoch);
  }
  const int64_t total_tokens = p.num_epochs * tokens_per_epoch;
  if (p.num_epochs > 1) {
    p.samples_before_last_epoch = ((p.num_epochs - 1) * tokens_per_epoch - extra) / L;
    p.samples_per_epoch = (tokens_per_epoch - extra) / L;
    const int64_t from_last_epoch = *cfg.num_samples - p.samples_before_last_epoch;
    MH_CORE_CHECK(from_last_epoch >= 0 && from_last_epoch <= p.samples_per_epoch + 1,
                  what, ": internal error in the epoch plan (", from_last_epoch,
                  " samples from the last epoch, ", p.samples_per_epoch, " per epoch)");
    // Megatron: separate when the last epoch is less than 80% used (int(0.80 * per_epoch)).
    const auto threshold = static_cast<int64_t>(0.80 * static_cast<double>(p.samples_per_epoch));
    p.separate_last_epoch = from_last_epoch < threshold;
  }
  if (total_tokens <= extra) {
    p.num_samples = 0;
  } else if (cfg.drop_last_partial) {
    p.num_samples = (total_tokens - extra) / L;
  } else {
    // helpers.cpp computes this in float32; reproduce it, rounding included.
    p.num_samples = static_cast<int64_t>(
        std::ceil(static_cast<float>(total_tokens - extra) / static_cast<float>(L)));
  }
  return p;
}

std::vector<int32_t> build_document_index(SequenceRange range, int64_t num_epochs,
                                          bool separate_last_epoch, NumpyRandomState& rng) {
  MH_CORE_CHECK(range.begin >= 0 && range.end >= range.begin &&
                    range.end <= std::numeric_limits<int32_t>::max(),
                "sequence range [", range.begin, ", ", range.end,
                ") does not fit the int32 document index Megatron uses");
  MH_CORE_CHECK(num_epochs >= 1, "number of epochs must be at least 1, got ", num_epochs);
  const size_t n = static_cast<size_t>(range.size());
  std::vector<int32_t> index(n * static_cast<size_t>(num_epochs));
  for (size_t e = 0; e < static_cast<size_t>(num_epochs); ++e)
    for (size_t i = 0; i < n; ++i) index[e * n + i] = static_cast<int32_t>(range.begin + i);
  if (!separate_last_epoch || num_epochs == 1) {
    rng.shuffle(index);
  } else {
    const size_t first = n * static_cast<size_t>(num_epochs - 1);
    rng.shuffle(index.data(), first);
    rng.shuffle(index.data() + first, n);
  }
  return index;
}

namespace {

template <typename T>
std::vector<T> walk_samples(const int32_t* lengths, const std::vector<int32_t>& doc_index,
                            int64_t seq_length, int64_t extra, int64_t num_samples) {
  std::vector<T> rows(2 * static_cast<size_t>(num_samples + 1));
  const int64_t last = static_cast<int64_t>(doc_index.size()) - 1;
  int64_t pos = 0;     // position in the document index
  int64_t offset = 0;  // token offset in that sequence
  rows[0] = 0;
  rows[1] = 0;
  for (int64_t s = 1; s <= num_samples; ++s) {
    // Walk L + extra tokens from the previous start, then step back `extra` so that
    // consecutive samples share that many tokens.
    int64_t remaining = seq_length + extra;
    while (remaining != 0) {
      const int64_t length = lengths[doc_index[pos]] - offset;
      remaining -= length;
      if (remaining <= 0) {
        offset += remaining + length - extra;
        remaining = 0;
      } else if (pos == last) {
        // Out of tokens: only reached for a kept partial last sample.
        offset = lengths[doc_index[pos]] - extra;
        break;
      } else {
        ++pos;
        offset = 0;
#if defined(__GNUC__)
        // Lengths are looked up in shuffled order: fetch a few documents ahead.
        if (pos + 16 <= last) __builtin_prefetch(lengths + doc_index[pos + 16]);
#endif
      }
    }
    rows[2 * s] = static_cast<T>(pos);
    rows[2 * s + 1] = static_cast<T>(offset);
  }
  return rows;
}

}  // namespace

IndexArray build_sample_index(const int32_t* sequence_lengths,
                              const std::vector<int32_t>& document_index,
                              const GPTIndexConfig& cfg, const EpochPlan& plan) {
  if (plan.num_samples > 0)
    MH_CORE_CHECK(!document_index.empty(), "sample index: empty document index for ",
                  plan.num_samples, " samples");
  if (document_index.size() <= static_cast<size_t>(std::numeric_limits<int32_t>::max()))
    return IndexArray(walk_samples<int32_t>(sequence_lengths, document_index, cfg.seq_length,
                                            cfg.extra(), plan.num_samples));
  return IndexArray(walk_samples<int64_t>(sequence_lengths, document_index, cfg.seq_length,
                                          cfg.extra(), plan.num_samples));
}

namespace {

template <typename T>
std::vector<T> shuffled_ranges(int64_t num_samples, int64_t total_size, NumpyRandomState& rng) {
  std::vector<T> index(static_cast<size_t>(total_size));
  for (size_t i = 0; i < index.size(); ++i) index[i] = static_cast<T>(i);
  rng.shuffle(index.data(), static_cast<size_t>(num_samples));
  if (num_samples != total_size)
    rng.shuffle(index.data() + num_samples, static_cast<size_t>(total_size - num_samples));
  return index;
}

}  // namespace

IndexArray build_shuffle_index(int64_t num_samples, int64_t total_size, NumpyRandomState& rng) {
  MH_CORE_CHECK(num_samples >= 0 && num_samples <= total_size, "shuffle index: ", num_samples,
                " samples out of range [0, ", total_size, "]");
  if (total_size >= static_cast<int64_t>(std::numeric_limits<uint32_t>::max()) - 1)
    return IndexArray(shuffled_ranges<int64_t>(num_samples, total_size, rng));
  return IndexArray(shuffled_ranges<uint32_t>(num_samples, total_size, rng));
}

GPTIndices build_gpt_indices(const std::vector<int32_t>& sequence_lengths, SequenceRange range,
                             const GPTIndexConfig& cfg, const std::string& what) {
  MH_CORE_CHECK(range.begin >= 0 && range.begin <= range.end &&
                    range.end <= static_cast<int64_t>(sequence_lengths.size()),
                what, ": sequence range [", range.begin, ", ", range.end, ") outside the ",
                sequence_lengths.size(), " sequences of the corpus");
  int64_t tokens = 0;
  for (int64_t i = range.begin; i < range.end; ++i) {
    MH_CORE_CHECK(sequence_lengths[i] >= 0, what, ": sequence ", i, " has negative length ",
                  sequence_lengths[i]);
    tokens += sequence_lengths[i];
  }
  GPTIndices out;
  out.plan = plan_epochs(tokens, cfg, what);
  NumpyRandomState rng(cfg.seed);
  out.document_index =
      build_document_index(range, out.plan.num_epochs, out.plan.separate_last_epoch, rng);
  out.sample_index = build_sample_index(sequence_lengths.data(), out.document_index, cfg, out.plan);
  const int64_t n = out.plan.num_samples;
  out.shuffle_index = build_shuffle_index(
      out.plan.separate_last_epoch ? out.plan.samples_before_last_epoch : n, n, rng);
  return out;
}

}  // namespace megahost::core::data
