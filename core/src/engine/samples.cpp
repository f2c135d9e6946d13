// [data] -> train/valid/test sample sources: each data_path prefix opened through the dataset
// format plugin, split by sequence ranges, indexed as Megatron's GPTDataset, blended by weight.
#include "megahost/core/engine/samples.h"

#include <cstdlib>

#include "megahost/core/data/gpt_dataset.h"
#include "megahost/core/error.h"

namespace megahost::core {

namespace {

// The data_path entries as (weight, prefix) pairs.
std::vector<std::pair<double, std::string>> parse_data_path(const Recipe& r) {
  const toml::node* n = r.section("data").table->get("data_path");
  const std::string at = r.where("data", "data_path");
  std::vector<std::string> items;
  if (n->is_string()) {
    items.push_back(*n->value<std::string>());
  } else if (const auto* a = n->as_array()) {
    for (const auto& e : *a) {
      if (e.is_string()) items.push_back(*e.value<std::string>());
      else if (e.is_number()) items.push_back(std::to_string(*e.value<double>()));
      else throw Error(cat(at, ": data.data_path entries must be strings or numbers"));
    }
  } else {
    throw Error(cat(at, ": data.data_path must be a prefix or [weight, prefix, ...]"));
  }
  MH_CORE_CHECK(!items.empty(), at, ": data.data_path is empty\nHINT: data_path = \"my_corpus_text_document\"");
  if (items.size() == 1) return {{1.0, items[0]}};
  MH_CORE_CHECK(items.size() % 2 == 0, at, ": data.data_path must alternate weight and prefix, e.g. [\"0.7\", \"a\", ",
                "\"0.3\", \"b\"]");
  std::vector<std::pair<double, std::string>> out;
  for (size_t i = 0; i < items.size(); i += 2) {
    char* end = nullptr;
    const double w = std::strtod(items[i].c_str(), &end);
    MH_CORE_CHECK(end != items[i].c_str() && *end == '\0' && w >= 0, at, ": data.data_path weight '", items[i],
                  "' is not a non-negative number\nHINT: data_path = [\"0.7\", \"a\", \"0.3\", \"b\"]");
    out.emplace_back(w, items[i + 1]);
  }
  return out;
}

// A dataset-format reader seen as the token source GPT indexing needs.
class ReaderTokenSource : public data::TokenSource {
 public:
  explicit ReaderTokenSource(const DatasetReader& r) : r_(r), lengths_(r.sequence_lengths()) {}
  uint64_t num_sequences() const override { return lengths_.size(); }
  const std::vector<int32_t>& sequence_lengths() const override { return lengths_; }
  void read(uint64_t seq, uint64_t offset, uint64_t count, int64_t* out) const override {
    r_.read(seq, offset, count, out);
  }
  std::string name() const override { return r_.prefix(); }

 private:
  const DatasetReader& r_;
  std::vector<int32_t> lengths_;
};

// Owns everything one split's samples depend on.
class GPTSamples : public SampleSource {
 public:
  std::vector<std::shared_ptr<ReaderTokenSource>> sources;  // outlive parts
  std::vector<std::unique_ptr<data::GPTDataset>> parts;
  std::unique_ptr<data::BlendedDataset> blend;
  uint64_t size() const override {
    return static_cast<uint64_t>(blend ? blend->size() : parts.front()->size());
  }
  void sample(uint64_t i, int64_t* out) const override {
    if (blend) blend->sample(static_cast<int64_t>(i), out);
    else parts.front()->sample(static_cast<int64_t>(i), out);
  }
};

}  // namespace

SplitSamples build_gpt_samples(const Recipe& r, DatasetFormat& format, int64_t seq_length, const SampleCounts& counts,
                               uint64_t seed) {
  SplitSamples out;
  const auto entries = parse_data_path(r);
  const std::string split = r.get_string("data", "split");
  std::vector<std::shared_ptr<ReaderTokenSource>> sources;
  for (const auto& [w, prefix] : entries) {
    out.readers.push_back(format.open_reader(prefix));
    sources.push_back(std::make_shared<ReaderTokenSource>(*out.readers.back()));
  }

  const uint64_t wanted[3] = {counts.train, counts.valid, counts.test};
  std::unique_ptr<SampleSource>* slots[3] = {&out.train, &out.valid, &out.test};
  for (int s = 0; s < 3; ++s) {
    if (wanted[s] == 0) continue;
    auto samples = std::make_unique<GPTSamples>();
    samples->sources = sources;
    std::vector<double> weights;
    for (const auto& e : entries) weights.push_back(e.first);
    data::BlendPlan plan;
    if (entries.size() > 1)
      plan = data::plan_blend(weights, static_cast<int64_t>(wanted[s]), 0.005, data::BlendLength::SumOfRequested);
    bool empty = false;
    for (size_t d = 0; d < entries.size(); ++d) {
      const auto& src = *sources[d];
      auto ranges = data::split_sequence_ranges(split, static_cast<int64_t>(src.num_sequences()));
      if (!ranges[s] || ranges[s]->size() == 0) {
        empty = true;
        break;
      }
      data::GPTIndexConfig cfg;
      cfg.seq_length = seq_length;
      cfg.num_samples = entries.size() > 1 ? plan.requested_samples[d] : static_cast<int64_t>(wanted[s]);
      cfg.seed = static_cast<uint32_t>(seed);
      samples->parts.push_back(std::make_unique<data::GPTDataset>(
          src, *ranges[s], cfg, cat(entries[d].second, " (", data::split_name(static_cast<data::Split>(s)), ")")));
    }
    if (empty) continue;  // the caller decides whether an empty split is fatal
    if (entries.size() > 1) {
      std::vector<const data::GPTDataset*> parts;
      for (const auto& p : samples->parts) parts.push_back(p.get());
      samples->blend = std::make_unique<data::BlendedDataset>(parts, weights, plan.size);
    }
    *slots[s] = std::move(samples);
  }
  return out;
}

}  // namespace megahost::core
