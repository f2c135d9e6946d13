// Megatron's T5 data for the training loop (see t5_batches.h).
#include "megahost/core/engine/t5_batches.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "megahost/core/data/gpt_indices.h"
#include "megahost/core/error.h"

namespace megahost::core {

namespace {

// A dataset-format reader as the sentence source of the T5 samples.
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

int64_t table_int(const Recipe& r, const char* section, const char* key, int64_t fallback) {
  auto n = r.section(section).table->get(key);
  return n != nullptr && n->is_integer() ? *n->value<int64_t>() : fallback;
}

// The vocabulary as the BertWordPiece tokenizers build it from [tokenizer] vocab_file and
// vocab_extra_ids: the file's pieces, [BOS], [EOS], <extra_id_0>..
data::T5Vocab read_t5_vocab(const Recipe& r) {
  const char* hint = "\nHINT: T5 data needs a WordPiece tokenizer: [tokenizer] plugin = \"BertWordPieceCase\", "
                     "vocab_file = \"bert-large-cased-vocab.txt\" and vocab_extra_ids = 100";
  auto f = r.section("tokenizer").table->get("vocab_file");
  MH_CORE_CHECK(f != nullptr && f->is_string(), r.path, ": [tokenizer] has no vocab_file, which T5 data reads", hint);
  const std::string path = *f->value<std::string>();
  std::ifstream in(path);
  MH_CORE_CHECK(in.good(), r.where("tokenizer", "vocab_file"), ": cannot read the vocabulary '", path, "'", hint);
  std::vector<std::string> pieces;
  for (std::string line; std::getline(in, line);) {
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
    pieces.push_back(line);
  }
  const int64_t extra = table_int(r, "tokenizer", "vocab_extra_ids", 0);
  return data::t5_vocab_of(data::megatron_wordpiece_vocab(std::move(pieces), extra),
                           r.where("tokenizer", "vocab_file"));
}

}  // namespace

bool t5_data_selected(const Recipe& r) {
  const std::string d = r.get_string("data", "dataset");
  return d == "t5" || (d == "auto" && model_plugin(r) == "t5");
}

void T5SampleSource::sample(uint64_t i, int64_t* out) const {
  const data::T5Sample s = t5_sample(i);
  std::copy(s.text_enc.begin(), s.text_enc.end(), out);
  out[s.text_enc.size()] = s.text_enc.back();  // a GPT reader wants seq_length + 1
}

SplitSamples build_t5_samples(const Recipe& r, DatasetFormat& format, int64_t encoder_seq_length,
                              const SampleCounts& counts, uint64_t seed) {
  namespace fs = std::filesystem;
  const char* hint = "\nHINT: data_path = \"my_corpus_text_sentence\" (a corpus preprocessed with --split-sentences)";
  for (const char* key : {"train_data_path", "valid_data_path", "test_data_path"})
    MH_CORE_CHECK(!r.has("data", key), r.where("data", key), ": T5 data reads one data_path split by `split`; ", key,
                  " is not supported with it", hint);
  MH_CORE_CHECK(r.has("data", "data_path"), r.path, ": [data] needs data_path for T5 samples", hint);
  const toml::node* dp = r.section("data").table->get("data_path");
  std::string prefix;
  if (dp->is_string()) prefix = *dp->value<std::string>();
  else if (const auto* a = dp->as_array(); a != nullptr && a->size() == 1 && (*a)[0].is_string())
    prefix = *(*a)[0].value<std::string>();
  MH_CORE_CHECK(!prefix.empty(), r.where("data", "data_path"),
                ": T5 data reads one prefix (blending T5 datasets is not supported)", hint);

  data::T5SampleConfig cfg;
  cfg.encoder_seq_length = encoder_seq_length;
  cfg.decoder_seq_length = table_int(r, "model", "decoder_seq_length", 0);
  MH_CORE_CHECK(cfg.decoder_seq_length > 0, r.path, ": [model] needs decoder_seq_length for T5 samples",
                "\nHINT: decoder_seq_length = 128 (Megatron's --decoder-seq-length)");
  cfg.seed = static_cast<uint32_t>(seed);
  cfg.masked_lm_prob = r.get_float("data", "mask_prob");
  cfg.short_seq_prob = r.get_float("data", "short_seq_prob");
  cfg.num_samples = static_cast<int64_t>(std::max<uint64_t>(1, counts.train));  // set per split below
  const data::T5Vocab vocab = read_t5_vocab(r);
  try {
    data::validate_t5_config(cfg, vocab);
  } catch (const Error& e) {
    throw Error(cat(r.path, ": ", e.what()));
  }

  auto reader = std::shared_ptr<DatasetReader>(format.open_reader(prefix));
  const std::vector<int64_t> docs = reader->document_indices();
  const int64_t num_docs = static_cast<int64_t>(docs.size()) - 1;
  auto sentences = std::make_shared<ReaderSentences>(reader);
  const auto ranges = data::split_sequence_ranges(r.get_string("data", "split"), num_docs);

  SplitSamples out;
  const uint64_t wanted[3] = {counts.train, counts.valid, counts.test};
  std::unique_ptr<SampleSource>* slots[3] = {&out.train, &out.valid, &out.test};
  for (int s = 0; s < 3; ++s) {
    if (wanted[s] == 0 || !ranges[s] || ranges[s]->size() == 0) continue;
    const auto split_id = static_cast<data::Split>(s);
    data::T5SampleConfig c = cfg;
    c.num_samples = static_cast<int64_t>(wanted[s]);
    data::BertCacheOptions cache;
    cache.folder = r.has("data", "data_cache_path") ? r.get_string("data", "data_cache_path")
                                                    : (fs::path(prefix) / "cache" / "T5MaskedWordPieceDataset_indices").string();
    cache.dataset_path = fs::absolute(prefix).lexically_normal().string();
    cache.split = split_id;
    cache.log = [](data::LogLevel level, const std::string& msg) {
      if (level == data::LogLevel::Warn) spdlog::warn("{}", msg);
      else spdlog::info("{}", msg);
    };
    const std::string what = cat(prefix, " (", data::split_name(split_id), ")");
    auto ds = std::make_unique<data::T5Dataset>(*sentences, docs, data::DocumentRange{ranges[s]->begin, ranges[s]->end},
                                                c, vocab, what, cache);
    spdlog::info("{}: T5 samples {} ({}){}", what, ds->size(), ds->loaded_from_cache() ? "loaded" : "built",
                 ds->cache_files().empty() ? "" : cat(" ", ds->cache_files(), "*"));
    *slots[s] = std::make_unique<T5SampleSource>(sentences, std::move(ds));
  }
  return out;
}

MicroBatchTensors make_t5_batch(const T5SampleSource& src, uint64_t first, int64_t count, const at::Device& device) {
  const int64_t se = src.dataset().config().encoder_seq_length, sd = src.dataset().config().decoder_seq_length;
  at::Tensor enc = at::empty({count, se}, at::kLong), enc_mask = at::empty({count, se}, at::kLong);  // [b, enc]
  at::Tensor dec = at::empty({count, sd}, at::kLong), labels = at::empty({count, sd}, at::kLong);    // [b, dec]
  at::Tensor dec_mask = at::empty({count, sd}, at::kLong), loss_mask = at::empty({count, sd}, at::kLong);
  for (int64_t i = 0; i < count; ++i) {
    const data::T5Sample b = src.t5_sample((first + i) % src.size());
    auto put = [&](at::Tensor& t, const std::vector<int64_t>& v) {
      std::copy(v.begin(), v.end(), t.data_ptr<int64_t>() + i * t.size(1));
    };
    put(enc, b.text_enc);
    put(enc_mask, b.enc_mask);
    put(dec, b.text_dec);
    put(labels, b.labels);
    put(dec_mask, b.dec_mask);
    put(loss_mask, b.loss_mask);
  }
  return {{"text_enc", enc.to(device)},     {"text_dec", dec.to(device)},
          {"labels", labels.to(device)},    {"loss_mask", loss_mask.to(at::kFloat).to(device)},
          {"enc_mask", enc_mask.to(device)}, {"dec_mask", dec_mask.to(device)}};
}

}  // namespace megahost::core
