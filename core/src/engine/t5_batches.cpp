// Megatron's T5 data for the training loop (see t5_batches.h).
#include "megahost/core/engine/t5_batches.h"
#include "megahost/core/engine/batches.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <string>
#include <vector>

#include "megahost/core/error.h"
#include "sentence_corpus.h"

namespace megahost::core {

namespace {

int64_t table_int(const Recipe& r, const char* section, const char* key, int64_t fallback) {
  auto n = r.section(section).table->get(key);
  return n != nullptr && n->is_integer() ? *n->value<int64_t>() : fallback;
}

// The vocabulary as the BertWordPiece tokenizers build it from [tokenizer] vocab_file and
// vocab_extra_ids: the file's pieces, [BOS], [EOS], <extra_id_0>..
data::T5Vocab read_t5_vocab(const Recipe& r) {
  const char* hint = "\nHINT: T5 data needs a WordPiece tokenizer: [tokenizer] plugin = \"BertWordPieceCase\", "
                     "vocab_file = \"bert-large-cased-vocab.txt\" and vocab_extra_ids = 100";
  std::vector<std::string> pieces = sentence_corpus::read_vocab_file(r, "T5", hint).pieces;
  const int64_t extra = table_int(r, "tokenizer", "vocab_extra_ids", 0);
  return data::t5_vocab_of(data::megatron_wordpiece_vocab(std::move(pieces), extra),
                           r.where("tokenizer", "vocab_file"));
}

}  // namespace

bool t5_data_selected(const Recipe& r) {
  const std::string d = r.get_string("data", "dataset");
  return d == "t5" || (d == "auto" && sentence_corpus::model_plugin(r) == "t5");
}

void T5SampleSource::sample(uint64_t i, int64_t* out) const {
  const data::T5Sample s = t5_sample(i);
  std::copy(s.text_enc.begin(), s.text_enc.end(), out);
  out[s.text_enc.size()] = s.text_enc.back();  // a GPT reader wants seq_length + 1
}

SplitSamples build_t5_samples(const Recipe& r, DatasetFormat& format, int64_t encoder_seq_length,
                              const SampleCounts& counts, uint64_t seed) {
  const std::string prefix = sentence_corpus::single_data_prefix(r, "T5");

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

  auto make = [&](std::shared_ptr<data::TokenSource> sentences, const std::vector<int64_t>& docs,
                  data::DocumentRange range, int64_t num_samples, const data::BertCacheOptions& cache,
                  const std::string& what) -> std::unique_ptr<SampleSource> {
    data::T5SampleConfig c = cfg;
    c.num_samples = num_samples;
    auto ds = std::make_unique<data::T5Dataset>(*sentences, docs, range, c, vocab, what, cache);
    spdlog::info("{}: T5 samples {} ({}){}", what, ds->size(), ds->loaded_from_cache() ? "loaded" : "built",
                 ds->cache_files().empty() ? "" : cat(" ", ds->cache_files(), "*"));
    return std::make_unique<T5SampleSource>(std::move(sentences), std::move(ds));
  };
  return sentence_corpus::build_splits(r, format, prefix, counts, "T5MaskedWordPieceDataset", make);
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
  return {{"text_enc", to_device_async(enc, device)},
          {"text_dec", to_device_async(dec, device)},
          {"labels", to_device_async(labels, device)},
          {"loss_mask", to_device_async(loss_mask.to(at::kFloat), device)},
          {"enc_mask", to_device_async(enc_mask, device)},
          {"dec_mask", to_device_async(dec_mask, device)}};
}

}  // namespace megahost::core
