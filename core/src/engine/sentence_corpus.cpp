// The sentence-corpus plumbing BERT and T5 data share (see sentence_corpus.h).
#include "sentence_corpus.h"

#include <spdlog/spdlog.h>

#include <filesystem>
#include <fstream>

#include "megahost/core/data/gpt_indices.h"
#include "megahost/core/error.h"

namespace megahost::core::sentence_corpus {

std::string model_plugin(const Recipe& r) {
  auto n = r.section("model").table->get("plugin");
  return n != nullptr && n->is_string() ? *n->value<std::string>() : "";
}

VocabFile read_vocab_file(const Recipe& r, const char* kind, const char* hint) {
  auto f = r.section("tokenizer").table->get("vocab_file");
  MH_CORE_CHECK(f != nullptr && f->is_string(), r.path, ": [tokenizer] has no vocab_file, which ", kind,
                " data reads", hint);
  VocabFile v;
  v.path = *f->value<std::string>();
  std::ifstream in(v.path);
  MH_CORE_CHECK(in.good(), r.where("tokenizer", "vocab_file"), ": cannot read the vocabulary '", v.path, "'", hint);
  for (std::string line; std::getline(in, line);) {
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
    v.pieces.push_back(line);
  }
  return v;
}

std::string single_data_prefix(const Recipe& r, const char* kind) {
  const char* hint = "\nHINT: data_path = \"my_corpus_text_sentence\" (a corpus preprocessed with --split-sentences)";
  for (const char* key : {"train_data_path", "valid_data_path", "test_data_path"})
    MH_CORE_CHECK(!r.has("data", key), r.where("data", key), ": ", kind,
                  " data reads one data_path split by `split`; ", key, " is not supported with it", hint);
  MH_CORE_CHECK(r.has("data", "data_path"), r.path, ": [data] needs data_path for ", kind, " samples", hint);
  const toml::node* dp = r.section("data").table->get("data_path");
  std::string prefix;
  if (dp->is_string()) prefix = *dp->value<std::string>();
  else if (const auto* a = dp->as_array(); a != nullptr && a->size() == 1 && (*a)[0].is_string())
    prefix = *(*a)[0].value<std::string>();
  MH_CORE_CHECK(!prefix.empty(), r.where("data", "data_path"), ": ", kind, " data reads one prefix (blending ", kind,
                " datasets is not supported)", hint);
  return prefix;
}

SplitSamples build_splits(const Recipe& r, DatasetFormat& format, const std::string& prefix,
                          const SampleCounts& counts, const char* cache_class, const MakeSplit& make) {
  namespace fs = std::filesystem;
  auto reader = std::shared_ptr<DatasetReader>(format.open_reader(prefix));
  const std::vector<int64_t> docs = reader->document_indices();
  const int64_t num_docs = static_cast<int64_t>(docs.size()) - 1;
  auto sentences = std::make_shared<ReaderSentences>(reader);
  // Megatron splits sentence data by document
  const auto ranges = data::split_sequence_ranges(r.get_string("data", "split"), num_docs);

  SplitSamples out;
  const uint64_t wanted[3] = {counts.train, counts.valid, counts.test};
  std::unique_ptr<SampleSource>* slots[3] = {&out.train, &out.valid, &out.test};
  for (int s = 0; s < 3; ++s) {
    if (wanted[s] == 0 || !ranges[s] || ranges[s]->size() == 0) continue;
    const auto split_id = static_cast<data::Split>(s);
    data::BertCacheOptions cache;
    cache.folder = r.has("data", "data_cache_path")
                       ? r.get_string("data", "data_cache_path")
                       : (fs::path(prefix) / "cache" / cat(cache_class, "_indices")).string();
    cache.dataset_path = fs::absolute(prefix).lexically_normal().string();
    cache.split = split_id;
    cache.log = [](data::LogLevel level, const std::string& msg) {
      if (level == data::LogLevel::Warn) spdlog::warn("{}", msg);
      else spdlog::info("{}", msg);
    };
    const std::string what = cat(prefix, " (", data::split_name(split_id), ")");
    *slots[s] = make(sentences, docs, data::DocumentRange{ranges[s]->begin, ranges[s]->end},
                     static_cast<int64_t>(wanted[s]), cache, what);
  }
  return out;
}

}  // namespace megahost::core::sentence_corpus
