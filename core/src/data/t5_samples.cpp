// Megatron's T5 samples: BERT's sentence-run sample index, then span corruption with sentinels
// (t5_dataset.py, masked_dataset.py). See t5_samples.h.
#include "megahost/core/data/t5_samples.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>

#include "megahost/core/data/numpy_random.h"
#include "megahost/core/error.h"

namespace megahost::core::data {

namespace {

constexpr const char* kClass = "T5MaskedWordPieceDataset";

double numpy_random(NumpyRandomState& rng) {  // random_sample(): 53 bits from two 32-bit draws
  const uint32_t a = rng.next_uint32() >> 5, b = rng.next_uint32() >> 6;
  return (a * 67108864.0 + b) / 9007199254740992.0;
}
// numpy's legacy geometric(p) for p < 1/3: inversion, ceil(log1p(-U) / log(1 - p)).
int64_t numpy_geometric(NumpyRandomState& rng, double p) {
  return static_cast<int64_t>(std::ceil(std::log1p(-numpy_random(rng)) / std::log(1.0 - p)));
}

// The sentence-run index is BERT's helper with max length encoder_seq_length - 2 and one sentence
// minimum: a BertSampleConfig whose target_length() (seq_length - 3) is that length.
BertSampleConfig run_config(const T5SampleConfig& c) {
  BertSampleConfig b;
  b.seq_length = c.target_length() + 3;
  b.num_samples = c.num_samples;
  b.seed = c.seed;
  b.masked_lm_prob = c.masked_lm_prob;
  b.short_seq_prob = c.short_seq_prob;
  b.binary_head = false;
  return b;
}

std::string description_of(const std::vector<int64_t>& docs, DocumentRange range, const T5SampleConfig& cfg,
                           const BertCacheOptions& o) {
  nlohmann::ordered_json j;
  j["class"] = kClass;
  j["dataset_path"] = o.dataset_path;
  j["num_samples"] = cfg.num_samples;
  j["index_split"] = split_name(o.split);
  j["random_seed"] = cfg.seed;
  j["sequence_length"] = cfg.encoder_seq_length;
  j["sequence_length_decoder"] = cfg.decoder_seq_length;
  j["short_sequence_probability"] = cfg.short_seq_prob;
  j["megahost"] = {{"cache_format", 1},
                   {"document_range", {range.begin, range.end}},
                   {"sentence_range", {docs[range.begin], docs[range.end]}}};
  return j.dump(4);
}

}  // namespace

std::vector<std::string> megatron_wordpiece_vocab(std::vector<std::string> pieces, int64_t extra_ids) {
  auto add = [&](const std::string& p) {
    if (std::find(pieces.begin(), pieces.end(), p) == pieces.end()) pieces.push_back(p);
  };
  add("[BOS]");
  add("[EOS]");
  for (int64_t k = 0; k < extra_ids; ++k) add(cat("<extra_id_", k, ">"));
  return pieces;
}

T5Vocab t5_vocab_of(const std::vector<std::string>& pieces, const std::string& where) {
  auto id_of = [&](const std::string& p) -> int64_t {
    const auto it = std::find(pieces.begin(), pieces.end(), p);
    return it == pieces.end() ? -1 : static_cast<int64_t>(it - pieces.begin());
  };
  T5Vocab v;
  v.pad = id_of("[PAD]");
  v.bos = id_of("[BOS]");
  v.eos = id_of("[EOS]");
  MH_CORE_CHECK(v.pad >= 0 && v.bos >= 0 && v.eos >= 0, where, ": the vocabulary has no ",
                v.pad < 0 ? "[PAD]" : v.bos < 0 ? "[BOS]" : "[EOS]",
                " token, which T5 samples need\nHINT: use a BERT WordPiece vocabulary (Megatron's T5 uses "
                "bert-large-cased's vocab.txt); the tokenizer appends [BOS] and [EOS]");
  for (int64_t k = 0;; ++k) {
    const int64_t id = id_of(cat("<extra_id_", k, ">"));
    if (id < 0) break;
    v.sentinels.push_back(id);
  }
  v.is_continuation = wordpiece_continuations(pieces);
  return v;
}

int64_t T5SampleConfig::max_predictions() const {
  return std::max<int64_t>(1, static_cast<int64_t>(std::floor(masked_lm_prob * static_cast<double>(target_length()))));
}

int64_t T5SampleConfig::max_spans() const { return std::min(max_predictions(), (decoder_seq_length - 1) / 2); }

void validate_t5_config(const T5SampleConfig& cfg, const T5Vocab& v) {
  MH_CORE_CHECK(cfg.encoder_seq_length >= 4, "T5 samples: encoder_seq_length = ", cfg.encoder_seq_length,
                " leaves no room for text\nHINT: encoder_seq_length >= 4 (Megatron's T5 uses 512)");
  MH_CORE_CHECK(cfg.num_samples > 0, "T5 samples: num_samples = ", cfg.num_samples,
                " must be positive\nHINT: train_iters * global_batch_size samples are requested");
  MH_CORE_CHECK(cfg.masked_lm_prob > 0 && cfg.masked_lm_prob < 1, "T5 samples: masked_lm_prob = ",
                cfg.masked_lm_prob, " must be in (0, 1)\nHINT: Megatron's --mask-prob default is 0.15");
  MH_CORE_CHECK(cfg.short_seq_prob >= 0 && cfg.short_seq_prob <= 1, "T5 samples: short_seq_prob = ",
                cfg.short_seq_prob, " must be in [0, 1]\nHINT: Megatron's --short-seq-prob default is 0.1");
  MH_CORE_CHECK(cfg.max_ngram >= 1 && cfg.geometric_p > 0 && cfg.geometric_p < 1,
                "T5 samples: max_ngram = ", cfg.max_ngram, ", geometric_p = ", cfg.geometric_p,
                "\nHINT: Megatron's T5 uses max_ngram 10 and p 0.2");
  const int64_t need = cfg.max_predictions() + 2;
  MH_CORE_CHECK(cfg.decoder_seq_length >= need, "T5 samples: decoder_seq_length = ", cfg.decoder_seq_length,
                " is too small for the spans: a sample of ", cfg.target_length(), " tokens masks up to ",
                cfg.max_predictions(), " of them (mask_prob ", cfg.masked_lm_prob,
                "), which with [BOS] and a sentinel need ", need,
                " decoder positions\nHINT: raise [model] decoder_seq_length to >= ", need,
                " (Megatron's T5: 128 for encoder_seq_length 512) or lower mask_prob / encoder_seq_length");
  MH_CORE_CHECK(v.pad >= 0 && v.bos >= 0 && v.eos >= 0, "T5 samples: the vocabulary lacks [PAD], [BOS] or [EOS]",
                "\nHINT: use a BERT WordPiece vocabulary with the BertWordPiece tokenizers");
  MH_CORE_CHECK(static_cast<int64_t>(v.sentinels.size()) >= cfg.max_spans(), "T5 samples: the vocabulary has ",
                v.sentinels.size(), " sentinel tokens (<extra_id_N>) but a sample can hold up to ", cfg.max_spans(),
                " masked spans (encoder_seq_length ", cfg.encoder_seq_length, ", decoder_seq_length ",
                cfg.decoder_seq_length, ", mask_prob ", cfg.masked_lm_prob,
                ")\nHINT: set [tokenizer] vocab_extra_ids = 100 (Megatron's T5: --vocab-extra-ids 100)");
}

T5Dataset::T5Dataset(const TokenSource& source, std::vector<int64_t> document_indices, DocumentRange range,
                     T5SampleConfig cfg, T5Vocab vocab, std::string what, const BertCacheOptions& opts)
    : source_(source),
      document_indices_(std::move(document_indices)),
      range_(range),
      cfg_(cfg),
      vocab_(std::move(vocab)),
      what_(std::move(what)) {
  validate_t5_config(cfg_, vocab_);
  const auto& lengths = source_.sequence_lengths();
  check_document_range(document_indices_, range_, what_);
  if (opts.folder.empty()) {
    index_ = build_bert_sample_index(document_indices_, lengths, range_, run_config(cfg_), what_);
    return;
  }
  const std::string description = description_of(document_indices_, range_, cfg_, opts);
  CachedSampleIndex cached = cached_sample_index(
      description, kClass, "T5", opts, document_indices_, range_, 1, cfg_.target_length(), what_,
      [&] { return build_bert_sample_index(document_indices_, lengths, range_, run_config(cfg_), what_); });
  index_ = std::move(cached.index);
  files_ = std::move(cached.files);
  loaded_ = cached.loaded;
}

T5Sample T5Dataset::sample(int64_t i) const {
  MH_CORE_CHECK(i >= 0 && i < size(), what_, ": T5 sample ", i, " outside [0, ", size(), ")");
  const int64_t first = index_[3 * i], end = index_[3 * i + 1], target = index_[3 * i + 2];
  NumpyRandomState rng(static_cast<uint32_t>((static_cast<uint64_t>(cfg_.seed) + static_cast<uint64_t>(i)) & 0xFFFFFFFFu));

  // The run's sentences as one token list, cut to the target.
  const auto& lengths = source_.sequence_lengths();
  std::vector<int64_t> tokens;
  for (int64_t s = first; s < end; ++s) {
    const size_t at = tokens.size();
    tokens.resize(at + static_cast<size_t>(lengths[s]));
    source_.read(static_cast<uint64_t>(s), 0, static_cast<uint64_t>(lengths[s]), tokens.data() + at);
  }
  const bool truncated = static_cast<int64_t>(tokens.size()) > target;
  if (truncated) tokens.resize(static_cast<size_t>(target));
  MH_CORE_CHECK(target <= cfg_.target_length(), what_, ": T5 sample ", i, " targets ", target,
                " tokens, more than encoder_seq_length - 2 = ", cfg_.target_length(),
                "\nHINT: the cached sample index was built for another encoder_seq_length; delete it");
  T5Sample out = corrupt_spans(tokens, target, cfg_, vocab_, rng);
  out.truncated = truncated ? 1 : 0;
  return out;
}

T5Sample corrupt_spans(const std::vector<int64_t>& tokens, int64_t target, const T5SampleConfig& cfg,
                       const T5Vocab& vocab, NumpyRandomState& rng) {
  T5Sample out;
  const auto n = static_cast<int64_t>(tokens.size());
  out.num_tokens = n;

  // Candidate words: a "##" piece joins the word before it.
  std::vector<std::pair<int64_t, int64_t>> words;  // [begin, end) positions
  for (int64_t p = 0; p < n; ++p) {
    const int64_t id = tokens[p];
    const bool joins = cfg.whole_word_masking && !words.empty() && id >= 0 &&
                       id < static_cast<int64_t>(vocab.is_continuation.size()) && vocab.is_continuation[id] != 0;
    if (joins) words.back().second = p + 1;
    else words.emplace_back(p, p + 1);
  }
  // Megatron: min(masking_probability * target (a float), max(1, round(n * masking_probability)));
  // counts are compared with it, so the float acts as its floor.
  const int64_t to_predict =
      std::min(static_cast<int64_t>(std::floor(cfg.masked_lm_prob * static_cast<double>(target))),
               std::max<int64_t>(1, static_cast<int64_t>(std::nearbyint(static_cast<double>(n) * cfg.masked_lm_prob))));
  std::vector<int64_t> order(words.size());
  for (size_t k = 0; k < order.size(); ++k) order[k] = static_cast<int64_t>(k);
  rng.shuffle(order);

  const auto nw = static_cast<int64_t>(words.size());
  const auto sentinels = static_cast<int64_t>(vocab.sentinels.size());
  std::vector<uint8_t> covered(static_cast<size_t>(n), 0);
  std::vector<std::pair<int64_t, int64_t>> spans;  // [begin, end) positions, in the order taken
  int64_t masked = 0;
  for (int64_t w : order) {
    if (masked >= to_predict) break;
    // SpanBERT's span length in words, clipped; the span stops at the last word.
    int64_t ngram = std::min<int64_t>(numpy_geometric(rng, cfg.geometric_p), cfg.max_ngram);
    auto span_of = [&](int64_t k) { return std::make_pair(words[w].first, words[std::min(w + k, nw) - 1].second); };
    auto span = span_of(ngram);
    // Shorter spans while it would overshoot the number to predict.
    while (masked + (span.second - span.first) > to_predict && ngram > 1) span = span_of(--ngram);
    const int64_t len = span.second - span.first;
    if (masked + len > to_predict) continue;
    if (std::any_of(covered.begin() + span.first, covered.begin() + span.second, [](uint8_t c) { return c != 0; }))
      continue;
    // Where Megatron would fail its assertions: no sentinel left, or a decoder too short.
    const auto k = static_cast<int64_t>(spans.size());
    if (k + 1 > sentinels || 1 + (k + 1) + (masked + len) > cfg.decoder_seq_length) continue;
    std::fill(covered.begin() + span.first, covered.begin() + span.second, 1);
    spans.push_back(span);
    masked += len;
  }
  std::sort(spans.begin(), spans.end());
  out.num_masked = masked;
  out.num_spans = static_cast<int64_t>(spans.size());

  // Encoder input: the text with each span replaced by its sentinel; decoder: [BOS] then, per
  // span, its sentinel and its tokens; labels: the decoder input shifted left, then [EOS].
  std::vector<int64_t>& enc = out.text_enc;
  std::vector<int64_t>& dec = out.text_dec;
  dec.push_back(vocab.bos);
  int64_t at = 0;
  for (size_t k = 0; k < spans.size(); ++k) {
    const auto [b, e] = spans[k];
    const int64_t sentinel = vocab.sentinels[k];
    enc.insert(enc.end(), tokens.begin() + at, tokens.begin() + b);
    enc.push_back(sentinel);
    dec.push_back(sentinel);
    dec.insert(dec.end(), tokens.begin() + b, tokens.begin() + e);
    at = e;
  }
  enc.insert(enc.end(), tokens.begin() + at, tokens.end());
  out.labels.assign(dec.begin() + 1, dec.end());
  out.labels.push_back(vocab.eos);

  const auto enc_len = static_cast<int64_t>(enc.size()), dec_len = static_cast<int64_t>(dec.size());
  MH_CORE_CHECK(enc_len <= cfg.encoder_seq_length && dec_len <= cfg.decoder_seq_length, "T5 samples: ", enc_len,
                " encoder and ", dec_len, " decoder tokens for lengths ", cfg.encoder_seq_length, " / ",
                cfg.decoder_seq_length, "\nHINT: the text is longer than encoder_seq_length - 2");
  const auto E = static_cast<size_t>(cfg.encoder_seq_length), D = static_cast<size_t>(cfg.decoder_seq_length);
  out.enc_mask.assign(E, 0);
  std::fill(out.enc_mask.begin(), out.enc_mask.begin() + enc_len, 1);
  out.dec_mask.assign(D, 0);
  std::fill(out.dec_mask.begin(), out.dec_mask.begin() + dec_len, 1);
  out.loss_mask = out.dec_mask;
  enc.resize(E, vocab.pad);
  dec.resize(D, vocab.pad);
  out.labels.resize(D, -1);
  return out;
}

}  // namespace megahost::core::data
