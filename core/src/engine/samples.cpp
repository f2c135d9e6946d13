// [data] -> train/valid/test sample sources: each prefix opened through the dataset format
// plugin, split by sequence ranges (or one whole dataset per split with train_data_path /
// valid_data_path / test_data_path), indexed as Megatron's GPTDataset with the indices cached
// on disk, blended by weight.
#include "megahost/core/engine/samples.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <optional>

#include "megahost/core/data/gpt_dataset.h"
#include "megahost/core/engine/bert_batches.h"
#include "megahost/core/engine/t5_batches.h"
#include "megahost/core/data/index_cache.h"
#include "megahost/core/data/mock_gpt.h"
#include "megahost/core/error.h"
#include "megahost/core/host_services.h"

namespace megahost::core {

namespace {

using Blend = std::vector<std::pair<double, std::string>>;  // (weight, prefix)

// A data path key as (weight, prefix) pairs: "prefix", ["prefix"], or [weight, prefix, ...].
Blend parse_blend(const Recipe& r, const std::string& key) {
  const toml::node* n = r.section("data").table->get(key);
  const std::string at = r.where("data", key);
  const std::string hint = cat("\nHINT: ", key, " = \"my_corpus_text_document\" or ", key,
                               " = [\"0.7\", \"a_text_document\", \"0.3\", \"b_text_document\"]");
  std::vector<std::string> items;
  if (n->is_string()) {
    items.push_back(*n->value<std::string>());
  } else if (const auto* a = n->as_array()) {
    for (const auto& e : *a) {
      if (e.is_string()) items.push_back(*e.value<std::string>());
      else if (e.is_number()) items.push_back(std::to_string(*e.value<double>()));
      else throw Error(cat(at, ": data.", key, " entries must be strings or numbers", hint));
    }
  } else {
    throw Error(cat(at, ": data.", key, " must be a prefix or [weight, prefix, ...]", hint));
  }
  MH_CORE_CHECK(!items.empty(), at, ": data.", key, " is empty", hint);
  if (items.size() == 1) return {{1.0, items[0]}};
  MH_CORE_CHECK(items.size() % 2 == 0, at, ": data.", key, " must alternate weight and prefix", hint);
  Blend out;
  for (size_t i = 0; i < items.size(); i += 2) {
    char* end = nullptr;
    const double w = std::strtod(items[i].c_str(), &end);
    MH_CORE_CHECK(end != items[i].c_str() && *end == '\0' && w >= 0, at, ": data.", key, " weight '", items[i],
                  "' is not a non-negative number", hint);
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
  std::vector<std::shared_ptr<data::TokenSource>> sources;  // outlive parts
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

void log_cache(data::LogLevel level, const std::string& msg) {
  if (level == data::LogLevel::Warn) spdlog::warn("{}", msg);
  else spdlog::info("{}", msg);
}

}  // namespace

SplitSamples build_gpt_samples(const Recipe& r, DatasetFormat& format, int64_t seq_length, const SampleCounts& counts,
                               uint64_t seed) {
  if (bert_data_selected(r)) return build_bert_samples(r, format, seq_length, counts, seed);  // [data] dataset
  if (t5_data_selected(r)) return build_t5_samples(r, format, seq_length, counts, seed);
  namespace fs = std::filesystem;
  const char* const split_keys[3] = {"train_data_path", "valid_data_path", "test_data_path"};
  const bool per_split = r.has("data", split_keys[0]) || r.has("data", split_keys[1]) || r.has("data", split_keys[2]);
  if (per_split && r.has("data", "data_path")) {
    const char* other = r.has("data", split_keys[0]) ? split_keys[0] : r.has("data", split_keys[1]) ? split_keys[1]
                                                                                                    : split_keys[2];
    throw Error(cat(r.where("data", "data_path"), ": data.data_path and data.", other,
                    " are exclusive (as Megatron's --data-path and --", other, ")\nHINT: give either data_path (",
                    "split by `split`) or train_data_path / valid_data_path / test_data_path (each used whole)"));
  }
  MH_CORE_CHECK(per_split || r.has("data", "data_path"), r.path,
                ": [data] needs data_path, or train_data_path / valid_data_path / test_data_path\n"
                "HINT: data_path = \"my_corpus_text_document\" (the .bin/.idx prefix)");

  // Each split's blend: the same data_path for all three, or its own key.
  Blend blends[3];
  for (int s = 0; s < 3; ++s) {
    if (!per_split) blends[s] = parse_blend(r, "data_path");
    else if (r.has("data", split_keys[s])) blends[s] = parse_blend(r, split_keys[s]);
  }
  const std::string split = per_split ? "" : r.get_string("data", "split");
  const std::string cache_path = r.has("data", "data_cache_path") ? r.get_string("data", "data_cache_path") : "";
  const RunFacts& facts = run_facts();

  SplitSamples out;
  std::map<std::string, std::shared_ptr<ReaderTokenSource>> opened;  // a prefix is opened once
  auto source_of = [&](const std::string& prefix) {
    auto it = opened.find(prefix);
    if (it != opened.end()) return it->second;
    out.readers.push_back(format.open_reader(prefix));
    return opened[prefix] = std::make_shared<ReaderTokenSource>(*out.readers.back());
  };
  MH_CORE_CHECK(!per_split || !blends[0].empty() || counts.train == 0, r.path,
                ": [data] has valid/test data paths but no train_data_path\n"
                "HINT: add train_data_path = \"my_train_text_document\"");
  for (const auto& b : blends)
    for (const auto& [w, prefix] : b) source_of(prefix);  // every bad path fails before any index work

  const uint64_t wanted[3] = {counts.train, counts.valid, counts.test};
  std::unique_ptr<SampleSource>* slots[3] = {&out.train, &out.valid, &out.test};
  for (int s = 0; s < 3; ++s) {
    const auto split_id = static_cast<data::Split>(s);
    if (wanted[s] == 0) continue;
    if (blends[s].empty()) continue;  // Megatron builds no dataset for a split without a path
    const Blend& entries = blends[s];
    auto samples = std::make_unique<GPTSamples>();
    std::vector<double> weights;
    for (const auto& e : entries) weights.push_back(e.first);
    data::BlendPlan plan;
    if (entries.size() > 1)
      plan = data::plan_blend(weights, static_cast<int64_t>(wanted[s]), 0.005, data::BlendLength::SumOfRequested);
    bool empty = false;
    for (size_t d = 0; d < entries.size(); ++d) {
      const std::string& prefix = entries[d].second;
      auto src = source_of(prefix);
      samples->sources.push_back(src);
      std::optional<data::SequenceRange> range = data::SequenceRange{0, static_cast<int64_t>(src->num_sequences())};
      if (!per_split) range = data::split_sequence_ranges(split, static_cast<int64_t>(src->num_sequences()))[s];
      if (!range || range->size() == 0) {
        empty = true;
        break;
      }
      data::GPTIndexConfig cfg;
      cfg.seq_length = seq_length;
      cfg.num_samples = entries.size() > 1 ? plan.requested_samples[d] : static_cast<int64_t>(wanted[s]);
      cfg.seed = static_cast<uint32_t>(seed);
      const std::string what = cat(prefix, " (", data::split_name(split_id), ")");

      data::IndexCacheOptions cache;
      cache.folder = cache_path.empty() ? data::default_cache_folder(prefix) : cache_path;
      cache.dataset_path = fs::absolute(prefix).lexically_normal().string();
      cache.split = split_id;
      cache.split_string = split;
      cache.rank = facts.rank;
      cache.world_size = facts.world_size;
      cache.log = log_cache;
      const auto t0 = std::chrono::steady_clock::now();
      data::CachedIndices ix = data::load_or_build_gpt_indices(src->sequence_lengths(), *range, cfg, what, cache);
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      const bool loaded = ix.origin == data::IndexOrigin::Loaded || ix.origin == data::IndexOrigin::LoadedMegatron;
      spdlog::info("{}: {} ({} samples, {} epochs) in {:.3f} s{}", what, data::origin_name(ix.origin),
                   ix.indices.plan.num_samples, ix.indices.plan.num_epochs, secs,
                   ix.files.empty() ? "" : cat(loaded ? " from " : ", cached as ", ix.files, "*"));
      samples->parts.push_back(
          std::make_unique<data::GPTDataset>(*src, *range, cfg, what, std::move(ix.indices)));
    }
    if (empty) continue;  // the caller decides whether an empty split is fatal
    if (entries.size() > 1) {
      // The blend indices are a cheap deterministic walk: rebuilt on every start, always the same.
      std::vector<const data::GPTDataset*> parts;
      for (const auto& p : samples->parts) parts.push_back(p.get());
      samples->blend = std::make_unique<data::BlendedDataset>(parts, weights, plan.size);
    }
    *slots[s] = std::move(samples);
  }
  return out;
}

SplitSamples build_mock_gpt_samples(const Recipe& r, int64_t seq_length, const SampleCounts& counts, uint64_t seed,
                                    int64_t vocab_size, int64_t eod) {
  MH_CORE_CHECK(!bert_data_selected(r) && !t5_data_selected(r), r.where("data", "mock_data"),
                ": mock_data makes GPT documents (Megatron's MockGPTDataset); this run builds BERT / T5 samples\n"
                "HINT: give data_path for BERT / T5 data, or drop mock_data");
  for (const char* key : {"data_path", "train_data_path", "valid_data_path", "test_data_path"})
    if (r.has("data", key)) spdlog::warn("{}: data.{} is not read: mock_data = true", r.where("data", key), key);
  auto source = std::make_shared<data::MockGPTTokenSource>(vocab_size, eod);
  const std::string split = r.get_string("data", "split");
  const auto ranges = data::split_sequence_ranges(split, static_cast<int64_t>(source->num_sequences()));
  const uint64_t wanted[3] = {counts.train, counts.valid, counts.test};
  SplitSamples out;
  std::unique_ptr<SampleSource>* slots[3] = {&out.train, &out.valid, &out.test};
  for (int s = 0; s < 3; ++s) {
    const auto& range = ranges[s];
    if (wanted[s] == 0 || !range || range->size() == 0) continue;
    data::GPTIndexConfig cfg;
    cfg.seq_length = seq_length;
    cfg.num_samples = static_cast<int64_t>(wanted[s]);
    cfg.seed = static_cast<uint32_t>(seed);
    const std::string what = cat("mock data (", data::split_name(static_cast<data::Split>(s)), ")");
    // Built in memory on every start, as Megatron builds its mock indices (no cache folder).
    const auto t0 = std::chrono::steady_clock::now();
    auto samples = std::make_unique<GPTSamples>();
    samples->sources.push_back(source);
    samples->parts.push_back(std::make_unique<data::GPTDataset>(*source, *range, cfg, what));
    spdlog::info("{}: built ({} samples, {} epochs) in {:.3f} s", what, samples->parts.back()->size(),
                 samples->parts.back()->indices().plan.num_epochs,
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    *slots[s] = std::move(samples);
  }
  return out;
}

}  // namespace megahost::core
