// Megatron's BERT data for the training loop (see bert_batches.h).
#include "megahost/core/engine/bert_batches.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <string>
#include <vector>

#include "megahost/core/error.h"
#include "sentence_corpus.h"

namespace megahost::core {

namespace {

// The vocabulary facts from [tokenizer] vocab_file: one WordPiece per line, id = line number.
data::BertVocab read_bert_vocab(const Recipe& r) {
  const char* hint = "\nHINT: BERT data needs a WordPiece tokenizer: [tokenizer] plugin = \"BertWordPieceLowerCase\" "
                     "and vocab_file = \"bert-vocab.txt\" (the vocabulary the corpus was preprocessed with)";
  const sentence_corpus::VocabFile file = sentence_corpus::read_vocab_file(r, "BERT", hint);
  const std::vector<std::string>& pieces = file.pieces;
  data::BertVocab v;
  auto id_of = [&](const char* piece) -> int64_t {
    for (size_t i = 0; i < pieces.size(); ++i)
      if (pieces[i] == piece) return static_cast<int64_t>(i);
    throw Error(cat(r.where("tokenizer", "vocab_file"), ": the vocabulary '", file.path, "' has no ", piece,
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
  return d == "bert" || (d == "auto" && sentence_corpus::model_plugin(r) == "bert");
}

void BertSampleSource::sample(uint64_t i, int64_t* out) const {
  const data::BertSample s = bert_sample(i);
  std::copy(s.tokens.begin(), s.tokens.end(), out);
  out[s.tokens.size()] = s.tokens.back();  // a GPT reader wants seq_length + 1
}

SplitSamples build_bert_samples(const Recipe& r, DatasetFormat& format, int64_t seq_length,
                                const SampleCounts& counts, uint64_t seed) {
  const std::string prefix = sentence_corpus::single_data_prefix(r, "BERT");

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

  auto make = [&](std::shared_ptr<data::TokenSource> sentences, const std::vector<int64_t>& docs,
                  data::DocumentRange range, int64_t num_samples, const data::BertCacheOptions& cache,
                  const std::string& what) -> std::unique_ptr<SampleSource> {
    data::BertSampleConfig c = cfg;
    c.num_samples = num_samples;
    auto ds = std::make_unique<data::BertDataset>(*sentences, docs, range, c, vocab, what, cache);
    spdlog::info("{}: BERT samples {} ({}){}", what, ds->size(), ds->loaded_from_cache() ? "loaded" : "built",
                 ds->cache_files().empty() ? "" : cat(" ", ds->cache_files(), "*"));
    return std::make_unique<BertSampleSource>(std::move(sentences), std::move(ds));
  };
  return sentence_corpus::build_splits(r, format, prefix, counts, "BERTMaskedWordPieceDataset", make);
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
  return {{"tokens", to_device_async(tokens, device)},
          {"token_types", to_device_async(types, device)},
          {"labels", to_device_async(labels, device)},
          {"padding_mask", to_device_async(padding, device)},
          {"loss_mask", to_device_async(loss_mask.to(at::kFloat), device)},
          {"is_random", to_device_async(is_random, device)}};
}

}  // namespace megahost::core
