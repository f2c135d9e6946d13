// Megatron's BERT data for the training loop (see bert_batches.h).
#include "megahost/core/engine/bert_batches.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>

#include "megahost/core/data/gpt_indices.h"
#include "megahost/core/data/index_cache.h"
#include "megahost/core/error.h"

namespace megahost::core {

namespace {

// A dataset-format reader as the sentence source of the BERT samples.
class ReaderSentences : public data::TokenSource {
 public:
  explicit ReaderSentences(std::shared_ptr<DatasetReader> r) : r_(std::move(r)), lengths_(r_->sequence_lengths()) {}
  uint64_t num_sequences() const override { return lengths_.size(); }
  const std::vector<int32_t>& sequence_lengths() const override { return lengths_; }
  void read(uint64_t seq, uint64_t offset, uint64_t count, int64_t* out) const override {
    r_->read(seq, offset, count, out);
  }
  std::string name() const override { return r_->prefix(); }

 private:
  std::shared_ptr<DatasetReader> r_;
  std::vector<int32_t> lengths_;
};

std::string model_plugin(const Recipe& r) {
  auto n = r.section("model").table->get("plugin");
  return n != nullptr && n->is_string() ? *n->value<std::string>() : "";
}

// The vocabulary facts from [tokenizer] vocab_file: one WordPiece per line, id = line number.
data::BertVocab read_bert_vocab(const Recipe& r) {
  const char* hint = "\nHINT: BERT data needs a WordPiece tokenizer: [tokenizer] plugin = \"BertWordPieceLowerCase\" "
                     "and vocab_file = \"bert-vocab.txt\" (the vocabulary the corpus was preprocessed with)";
  auto f = r.section("tokenizer").table->get("vocab_file");
  MH_CORE_CHECK(f != nullptr && f->is_string(), r.path, ": [tokenizer] has no vocab_file, which BERT data reads",
                hint);
  const std::string path = *f->value<std::string>();
  std::ifstream in(path);
  MH_CORE_CHECK(in.good(), r.where("tokenizer", "vocab_file"), ": cannot read the vocabulary '", path, "'", hint);
  std::vector<std::string> pieces;
  for (std::string line; std::getline(in, line);) {
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
    pieces.push_back(line);
  }
  data::BertVocab v;
  auto id_of = [&](const char* piece) -> int64_t {
    for (size_t i = 0; i < pieces.size(); ++i)
      if (pieces[i] == piece) return static_cast<int64_t>(i);
    throw Error(cat(r.where("tokenizer", "vocab_file"), ": the vocabulary '", path, "' has no ", piece,
                    " token, which BERT samples need ([CLS] [SEP] [MASK] [PAD])", hint));
  };
  v.cls = id_of("[CLS]");
  v.sep = id_of("[SEP]");
  v.mask = id_of("[MASK]");
  v.pad = id_of("[PAD]");
  v.vocab_size = static_cast<int64_t>(pieces.size());
  v.is_continuation = data::wordpiece_continuations(pieces);
  return v;
}

}  // namespace

bool bert_data_selected(const Recipe& r) {
  const std::string d = r.get_string("data", "dataset");
  MH_CORE_CHECK(d == "auto" || d == "gpt" || d == "bert" || d == "t5", r.where("data", "dataset"),
                ": [data] dataset = '", d,
                "' is not a dataset kind\nHINT: dataset = \"gpt\", \"bert\", \"t5\" or \"auto\"");
  return d == "bert" || (d == "auto" && model_plugin(r) == "bert");
}

void BertSampleSource::sample(uint64_t i, int64_t* out) const {
  const data::BertSample s = bert_sample(i);
  std::copy(s.tokens.begin(), s.tokens.end(), out);
  out[s.tokens.size()] = s.tokens.back();  // a GPT reader wants seq_length + 1
}

SplitSamples build_bert_samples(const Recipe& r, DatasetFormat& format, int64_t seq_length,
                                const SampleCounts& counts, uint64_t seed) {
  namespace fs = std::filesystem;
  const char* hint = "\nHINT: data_path = \"my_corpus_text_sentence\" (a corpus preprocessed with --split-sentences)";
  for (const char* key : {"train_data_path", "valid_data_path", "test_data_path"})
    MH_CORE_CHECK(!r.has("data", key), r.where("data", key), ": BERT data reads one data_path split by `split`; ",
                  key, " is not supported with it", hint);
  MH_CORE_CHECK(r.has("data", "data_path"), r.path, ": [data] needs data_path for BERT samples", hint);
  const toml::node* dp = r.section("data").table->get("data_path");
  std::string prefix;
  if (dp->is_string()) prefix = *dp->value<std::string>();
  else if (const auto* a = dp->as_array(); a != nullptr && a->size() == 1 && (*a)[0].is_string())
    prefix = *(*a)[0].value<std::string>();
  MH_CORE_CHECK(!prefix.empty(), r.where("data", "data_path"),
                ": BERT data reads one prefix (blending BERT datasets is not supported)", hint);

  data::BertSampleConfig cfg;
  cfg.seq_length = seq_length;
  cfg.seed = static_cast<uint32_t>(seed);
  cfg.masked_lm_prob = r.get_float("data", "mask_prob");
  cfg.short_seq_prob = r.get_float("data", "short_seq_prob");
  auto head = r.section("model").table->get("bert_binary_head");
  cfg.binary_head = head != nullptr && head->is_boolean() ? *head->value<bool>() : true;
  cfg.num_samples = static_cast<int64_t>(std::max<uint64_t>(1, counts.train));  // set per split below
  const data::BertVocab vocab = read_bert_vocab(r);
  try {
    data::validate_bert_config(cfg, vocab);
  } catch (const Error& e) {
    throw Error(cat(r.path, ": ", e.what()));
  }

  auto reader = std::shared_ptr<DatasetReader>(format.open_reader(prefix));
  const std::vector<int64_t> docs = reader->document_indices();
  const int64_t num_docs = static_cast<int64_t>(docs.size()) - 1;
  auto sentences = std::make_shared<ReaderSentences>(reader);
  const std::string split = r.get_string("data", "split");
  const auto ranges = data::split_sequence_ranges(split, num_docs);  // Megatron splits sentence data by document

  SplitSamples out;
  const uint64_t wanted[3] = {counts.train, counts.valid, counts.test};
  std::unique_ptr<SampleSource>* slots[3] = {&out.train, &out.valid, &out.test};
  for (int s = 0; s < 3; ++s) {
    if (wanted[s] == 0 || !ranges[s] || ranges[s]->size() == 0) continue;
    const auto split_id = static_cast<data::Split>(s);
    data::BertSampleConfig c = cfg;
    c.num_samples = static_cast<int64_t>(wanted[s]);
    data::BertCacheOptions cache;
    cache.folder = r.has("data", "data_cache_path") ? r.get_string("data", "data_cache_path")
                                                    : (fs::path(prefix) / "cache" / "BERTMaskedWordPieceDataset_indices").string();
    cache.dataset_path = fs::absolute(prefix).lexically_normal().string();
    cache.split = split_id;
    cache.log = [](data::LogLevel level, const std::string& msg) {
      if (level == data::LogLevel::Warn) spdlog::warn("{}", msg);
      else spdlog::info("{}", msg);
    };
    const std::string what = cat(prefix, " (", data::split_name(split_id), ")");
    auto ds = std::make_unique<data::BertDataset>(*sentences, docs, data::DocumentRange{ranges[s]->begin, ranges[s]->end},
                                                  c, vocab, what, cache);
    spdlog::info("{}: BERT samples {} ({}){}", what, ds->size(), ds->loaded_from_cache() ? "loaded" : "built",
                 ds->cache_files().empty() ? "" : cat(" ", ds->cache_files(), "*"));
    *slots[s] = std::make_unique<BertSampleSource>(sentences, std::move(ds));
  }
  return out;
}

MicroBatchTensors make_bert_batch(const BertSampleSource& src, uint64_t first, int64_t count,
                                  const at::Device& device) {
  const int64_t s = src.dataset().config().seq_length;
  at::Tensor tokens = at::empty({count, s}, at::kLong), types = at::empty({count, s}, at::kLong);
  at::Tensor labels = at::empty({count, s}, at::kLong), padding = at::empty({count, s}, at::kLong);
  at::Tensor loss_mask = at::empty({count, s}, at::kLong), is_random = at::empty({count}, at::kLong);
  for (int64_t i = 0; i < count; ++i) {
    const data::BertSample b = src.bert_sample((first + i) % src.size());
    auto put = [&](at::Tensor& t, const std::vector<int64_t>& v) {
      std::copy(v.begin(), v.end(), t.data_ptr<int64_t>() + i * s);
    };
    put(tokens, b.tokens);
    put(types, b.token_types);
    put(labels, b.labels);
    put(padding, b.padding_mask);
    put(loss_mask, b.loss_mask);
    is_random.data_ptr<int64_t>()[i] = b.is_random;
  }
  return {{"tokens", tokens.to(device)},          {"token_types", types.to(device)},
          {"labels", labels.to(device)},          {"padding_mask", padding.to(device)},
          {"loss_mask", loss_mask.to(at::kFloat).to(device)}, {"is_random", is_random.to(device)}};
}

}  // namespace megahost::core
