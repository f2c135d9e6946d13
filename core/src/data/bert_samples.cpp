// Megatron's BERT samples: the sentence-run sample index (helpers.cpp build_mapping) and the
// per-sample pair / truncation / masking (bert_dataset.py, masked_dataset.py). See bert_samples.h.
#include "megahost/core/data/bert_samples.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <random>
#include <utility>

#include "megahost/core/data/md5.h"
#include "megahost/core/data/npy.h"
#include "megahost/core/data/numpy_random.h"
#include "megahost/core/error.h"

namespace megahost::core::data {

namespace fs = std::filesystem;

namespace {

constexpr const char* kClass = "BERTMaskedWordPieceDataset";
constexpr int32_t kLongSentence = 512;  // Megatron skips documents holding a longer sentence

// numpy's legacy RandomState draws used by Megatron's __getitem__.
double numpy_random(NumpyRandomState& rng) {  // random_sample(): 53 bits from two 32-bit draws
  const uint32_t a = rng.next_uint32() >> 5, b = rng.next_uint32() >> 6;
  return (a * 67108864.0 + b) / 9007199254740992.0;
}
int64_t numpy_randint(NumpyRandomState& rng, int64_t low, int64_t high) {  // [low, high)
  return low + static_cast<int64_t>(rng.random_interval(static_cast<uint64_t>(high - low - 1)));
}
// choice(len(p), p=p): inverse CDF with searchsorted(side="right").
int numpy_choice(NumpyRandomState& rng, const std::vector<double>& p) {
  std::vector<double> cdf(p.size());
  double sum = 0;
  for (size_t k = 0; k < p.size(); ++k) cdf[k] = sum += p[k];
  const double u = numpy_random(rng) * sum;
  return static_cast<int>(std::upper_bound(cdf.begin(), cdf.end(), u) - cdf.begin());
}

// Megatron's get_target_sample_len: one draw per call when short sequences are enabled.
int64_t target_sample_length(int64_t short_seq_ratio, int64_t max_length, std::mt19937& rng) {
  if (short_seq_ratio == 0) return max_length;
  const uint32_t r = rng();
  if (r % short_seq_ratio == 0) return 2 + r % (max_length - 1);
  return max_length;
}

std::string description_of(const std::vector<int64_t>& docs, const std::vector<int32_t>& lengths,
                           DocumentRange range, const BertSampleConfig& cfg, const BertCacheOptions& o) {
  int64_t tokens = 0;
  for (int64_t s = docs[range.begin]; s < docs[range.end]; ++s) tokens += lengths[s];
  nlohmann::ordered_json j;
  j["class"] = kClass;
  j["dataset_path"] = o.dataset_path;
  j["num_samples"] = cfg.num_samples;
  j["index_split"] = split_name(o.split);
  j["random_seed"] = cfg.seed;
  j["sequence_length"] = cfg.seq_length;
  j["short_sequence_probability"] = cfg.short_seq_prob;
  j["classification_head"] = cfg.binary_head;
  j["megahost"] = {{"cache_format", 1},
                   {"document_range", {range.begin, range.end}},
                   {"sentence_range", {docs[range.begin], docs[range.end]}},
                   {"num_sentences", lengths.size()},
                   {"tokens_in_range", tokens}};
  return j.dump(4);
}

// The cached index, or "" with the reason it cannot be used.
std::string load_cached(const std::string& file, const std::vector<int64_t>& docs, DocumentRange range,
                        int64_t min_target, int64_t max_target, std::vector<int64_t>& out) {
  try {
    auto npy = NpyFile::map(file);
    const NpyHeader& h = npy->header();
    if (h.dtype != NpyDType::Int64 || h.shape.size() != 2 || h.shape[1] != 3 || h.shape[0] < 1)
      return cat(file, ": expected int64 [N, 3], found ", npy_dtype_name(h.dtype), " of ", h.shape.size(), " dims");
    const auto* v = static_cast<const int64_t*>(npy->data());
    const int64_t lo = docs[range.begin], hi = docs[range.end];
    for (int64_t r = 0; r < h.shape[0]; ++r) {
      const int64_t a = v[3 * r], b = v[3 * r + 1], t = v[3 * r + 2];
      if (a < lo || b > hi || a >= b || t < min_target || t > max_target)
        return cat(file, ": row ", r, " (", a, ", ", b, ", ", t, ") is outside the split");
    }
    out.assign(v, v + 3 * h.shape[0]);
    return "";
  } catch (const std::exception& e) {
    return e.what();
  }
}

}  // namespace

std::vector<uint8_t> wordpiece_continuations(const std::vector<std::string>& pieces) {
  std::vector<uint8_t> out(pieces.size(), 0);
  for (size_t i = 0; i < pieces.size(); ++i) out[i] = pieces[i].rfind("##", 0) == 0 ? 1 : 0;
  return out;
}

void validate_bert_config(const BertSampleConfig& cfg, const BertVocab& v) {
  MH_CORE_CHECK(cfg.seq_length >= 5, "BERT samples: seq_length = ", cfg.seq_length,
                " leaves no room for [CLS] A [SEP] B [SEP]\nHINT: seq_length >= 5 (Megatron's BERT uses 512)");
  MH_CORE_CHECK(cfg.num_samples > 0, "BERT samples: num_samples = ", cfg.num_samples,
                " must be positive\nHINT: train_iters * global_batch_size samples are requested");
  MH_CORE_CHECK(cfg.masked_lm_prob > 0 && cfg.masked_lm_prob < 1, "BERT samples: masked_lm_prob = ",
                cfg.masked_lm_prob, " must be in (0, 1)\nHINT: Megatron's --mask-prob default is 0.15");
  MH_CORE_CHECK(cfg.short_seq_prob >= 0 && cfg.short_seq_prob <= 1, "BERT samples: short_seq_prob = ",
                cfg.short_seq_prob, " must be in [0, 1]\nHINT: Megatron's --short-seq-prob default is 0.1");
  MH_CORE_CHECK(cfg.max_ngram >= 1, "BERT samples: max_ngram = ", cfg.max_ngram,
                " must be >= 1\nHINT: 1 masks single words; Megatron's BERT uses 3");
  MH_CORE_CHECK(cfg.max_predictions >= 0, "BERT samples: max_predictions = ", cfg.max_predictions,
                " must be >= 0\nHINT: 0 = no cap");
  MH_CORE_CHECK(v.vocab_size > 0, "BERT samples: the tokenizer reports vocab_size = ", v.vocab_size,
                "\nHINT: use a WordPiece tokenizer (BertWordPieceLowerCase / BertWordPieceCase) with a vocab_file");
  const std::pair<const char*, int64_t> special[] = {{"[CLS]", v.cls}, {"[SEP]", v.sep}, {"[MASK]", v.mask},
                                                     {"[PAD]", v.pad}};
  for (const auto& [name, id] : special)
    MH_CORE_CHECK(id >= 0 && id < v.vocab_size, "BERT samples: the tokenizer has no ", name, " token (id ", id,
                  ", vocabulary of ", v.vocab_size,
                  ")\nHINT: BERT needs [CLS] [SEP] [MASK] [PAD] in the vocab_file (a BERT WordPiece vocabulary)");
  MH_CORE_CHECK(!cfg.whole_word_masking || v.is_continuation.empty() ||
                    static_cast<int64_t>(v.is_continuation.size()) == v.vocab_size,
                "BERT samples: is_continuation has ", v.is_continuation.size(), " entries for a vocabulary of ",
                v.vocab_size, "\nHINT: build it with wordpiece_continuations(all pieces of the vocabulary)");
}

std::vector<int64_t> build_bert_sample_index(const std::vector<int64_t>& docs, const std::vector<int32_t>& lengths,
                                             DocumentRange range, const BertSampleConfig& cfg,
                                             const std::string& what) {
  const int64_t num_docs = static_cast<int64_t>(docs.size()) - 1;
  MH_CORE_CHECK(num_docs >= 0 && docs.front() == 0 && docs.back() == static_cast<int64_t>(lengths.size()), what,
                ": the document indices (", docs.size(), " entries, last ", docs.empty() ? -1 : docs.back(),
                ") do not cover the ", lengths.size(), " sentences\nHINT: the .idx is damaged; preprocess again");
  MH_CORE_CHECK(range.begin >= 0 && range.begin <= range.end && range.end <= num_docs, what, ": document range [",
                range.begin, ", ", range.end, ") outside the ", num_docs, " documents");
  const int64_t max_len = cfg.target_length();
  const int64_t short_ratio = cfg.short_seq_prob > 0 ? static_cast<int64_t>(std::nearbyint(1.0 / cfg.short_seq_prob)) : 0;
  const int min_sent = cfg.min_sentences();

  std::vector<int64_t> rows;  // (first, end, target) per sample
  std::mt19937 rand32(cfg.seed);
  for (int64_t epoch = 0; static_cast<int64_t>(rows.size() / 3) < cfg.num_samples; ++epoch) {
    if (epoch == 1 && rows.empty())
      throw Error(cat(what, ": no document of the ", range.size(), " in the split has ", min_sent,
                      " or more sentences (each at most ", kLongSentence,
                      " tokens), so no BERT sample can be built\nHINT: preprocess with --split-sentences (",
                      min_sent == 2 ? "the binary head needs two sentences per sample; or set bert_binary_head = false"
                                    : "one sentence per sequence",
                      ")"));
    for (int64_t d = range.begin; d < range.end; ++d) {
      const int64_t first = docs[d], last = docs[d + 1];
      int64_t remain = last - first;
      bool long_sentence = false;
      if (remain > 1)
        for (int64_t s = first; s < last && !long_sentence; ++s) long_sentence = lengths[s] > kLongSentence;
      if (remain < min_sent || long_sentence) continue;
      int64_t start = first, tokens = 0, sentences = 0;
      int64_t target = target_sample_length(short_ratio, max_len, rand32);
      for (int64_t s = first; s < last; ++s) {
        tokens += lengths[s];
        ++sentences;
        --remain;
        if ((tokens >= target && remain > 1 && sentences >= min_sent) || remain == 0) {
          rows.insert(rows.end(), {start, s + 1, target});
          start = s + 1;
          target = target_sample_length(short_ratio, max_len, rand32);
          tokens = sentences = 0;
        }
      }
    }
  }
  // Megatron's shuffle: Fisher-Yates with j = rand64() % (i + 1).
  std::mt19937_64 rand64(static_cast<uint64_t>(cfg.seed) + 1);
  const int64_t n = static_cast<int64_t>(rows.size() / 3);
  for (int64_t i = n - 1; i > 0; --i) {
    const auto j = static_cast<int64_t>(rand64() % static_cast<uint64_t>(i + 1));
    for (int k = 0; k < 3; ++k) std::swap(rows[3 * i + k], rows[3 * j + k]);
  }
  return rows;
}

void check_document_range(const std::vector<int64_t>& document_indices, DocumentRange range, const std::string& what) {
  MH_CORE_CHECK(!document_indices.empty() && range.begin >= 0 && range.begin <= range.end &&
                    range.end < static_cast<int64_t>(document_indices.size()),
                what, ": document range [", range.begin, ", ", range.end, ") outside the ",
                static_cast<int64_t>(document_indices.size()) - 1, " documents");
}

CachedSampleIndex cached_sample_index(const std::string& description, const char* dataset_class, const char* kind,
                                      const BertCacheOptions& opts, const std::vector<int64_t>& document_indices,
                                      DocumentRange range, int64_t min_target, int64_t max_target,
                                      const std::string& what, const std::function<std::vector<int64_t>()>& build) {
  CachedSampleIndex out;
  out.files = (fs::path(opts.folder) / cat(md5_hex(description), "-", dataset_class, "-", split_name(opts.split), "-"))
                  .string();
  const std::string index_file = out.files + "sample_index.npy", description_file = out.files + "description.txt";
  std::error_code ec;
  if (fs::exists(description_file, ec) && fs::exists(index_file, ec)) {
    const std::string problem = load_cached(index_file, document_indices, range, min_target, max_target, out.index);
    if (problem.empty()) {
      out.loaded = true;
      return out;
    }
    if (opts.log)
      opts.log(LogLevel::Warn, cat(what, ": the cached ", kind, " sample index is unusable and is rebuilt: ", problem));
  }
  out.index = build();
  try {
    fs::create_directories(opts.folder);
    write_npy_atomic(index_file, NpyDType::Int64, {static_cast<int64_t>(out.index.size() / 3), 3}, out.index.data());
    write_file_atomic(description_file, description);  // last: marks the set complete
  } catch (const std::exception& e) {
    out.files.clear();
    if (opts.log)
      opts.log(LogLevel::Warn, cat(what, ": could not cache the ", kind, " sample index in ", opts.folder, ": ",
                                   e.what(), "\nHINT: set [data] data_cache_path to a writable folder"));
  }
  return out;
}

BertDataset::BertDataset(const TokenSource& source, std::vector<int64_t> document_indices, DocumentRange range,
                         BertSampleConfig cfg, BertVocab vocab, std::string what, const BertCacheOptions& opts)
    : source_(source),
      document_indices_(std::move(document_indices)),
      range_(range),
      cfg_(cfg),
      vocab_(std::move(vocab)),
      what_(std::move(what)) {
  validate_bert_config(cfg_, vocab_);
  const auto& lengths = source_.sequence_lengths();
  if (opts.folder.empty()) {
    index_ = build_bert_sample_index(document_indices_, lengths, range_, cfg_, what_);
    return;
  }
  check_document_range(document_indices_, range_, what_);
  const std::string description = description_of(document_indices_, lengths, range_, cfg_, opts);
  CachedSampleIndex cached =
      cached_sample_index(description, kClass, "BERT", opts, document_indices_, range_, 2, cfg_.target_length(), what_,
                          [&] { return build_bert_sample_index(document_indices_, lengths, range_, cfg_, what_); });
  index_ = std::move(cached.index);
  files_ = std::move(cached.files);
  loaded_ = cached.loaded;
}

BertSample BertDataset::sample(int64_t i) const {
  MH_CORE_CHECK(i >= 0 && i < size(), what_, ": BERT sample ", i, " outside [0, ", size(), ")");
  const int64_t first = index_[3 * i], end = index_[3 * i + 1], target = index_[3 * i + 2];
  NumpyRandomState rng(static_cast<uint32_t>((static_cast<uint64_t>(cfg_.seed) + static_cast<uint64_t>(i)) & 0xFFFFFFFFu));

  // The sentences, and A / B as sentence ranges [first, pivot) and [pivot, end).
  const auto& lengths = source_.sequence_lengths();
  const int64_t n = end - first;
  int64_t pivot = end;
  bool is_random = false;
  if (cfg_.binary_head) {
    MH_CORE_CHECK(n > 1, what_, ": BERT sample ", i, " has ", n, " sentence(s); the binary head needs two");
    pivot = first + (n >= 3 ? numpy_randint(rng, 1, n) : 1);
    is_random = numpy_random(rng) < 0.5;
  }
  auto read_range = [&](int64_t a, int64_t b) {
    std::vector<int64_t> out;
    for (int64_t s = a; s < b; ++s) {
      const size_t at = out.size();
      out.resize(at + static_cast<size_t>(lengths[s]));
      source_.read(static_cast<uint64_t>(s), 0, static_cast<uint64_t>(lengths[s]), out.data() + at);
    }
    return out;
  };
  std::vector<int64_t> a = read_range(first, pivot), b = read_range(pivot, end);
  if (is_random) std::swap(a, b);

  // Truncate from either end of the longer segment (B on ties) until the pair fits the target.
  size_t a_lo = 0, a_hi = a.size(), b_lo = 0, b_hi = b.size();
  const bool truncated = static_cast<int64_t>(a.size() + b.size()) > target;
  while (static_cast<int64_t>((a_hi - a_lo) + (b_hi - b_lo)) > target) {
    const bool from_a = (a_hi - a_lo) > (b_hi - b_lo);
    size_t& lo = from_a ? a_lo : b_lo;
    size_t& hi = from_a ? a_hi : b_hi;
    if (numpy_random(rng) < 0.5) ++lo;
    else --hi;
  }

  BertSample s;
  s.is_random = is_random ? 1 : 0;
  s.truncated = truncated ? 1 : 0;
  s.first_sentence = first;
  s.end_sentence = end;
  std::vector<int64_t>& tok = s.tokens;
  std::vector<int64_t>& types = s.token_types;
  tok.push_back(vocab_.cls);
  tok.insert(tok.end(), a.begin() + static_cast<ptrdiff_t>(a_lo), a.begin() + static_cast<ptrdiff_t>(a_hi));
  tok.push_back(vocab_.sep);
  types.assign(tok.size(), 0);
  if (b_hi > b_lo) {
    tok.insert(tok.end(), b.begin() + static_cast<ptrdiff_t>(b_lo), b.begin() + static_cast<ptrdiff_t>(b_hi));
    tok.push_back(vocab_.sep);
    types.resize(tok.size(), 1);
  }
  const auto real = static_cast<int64_t>(tok.size());
  MH_CORE_CHECK(real <= cfg_.seq_length, what_, ": BERT sample ", i, " has ", real, " tokens for seq_length ",
                cfg_.seq_length, "\nHINT: the cached sample index was built for another seq_length; delete it");

  // Masking candidates: words of positions (a continuation piece joins the previous word).
  // A "##" piece right after [CLS]/[SEP] (B truncated at its front) starts its own word: words
  // never span a special token.
  std::vector<std::vector<int64_t>> words;
  bool after_special = true;
  for (int64_t p = 0; p < real; ++p) {
    const int64_t id = tok[p];
    if (id == vocab_.cls || id == vocab_.sep) {
      after_special = true;
      continue;
    }
    const bool joins = cfg_.whole_word_masking && !after_special && id >= 0 &&
                       id < static_cast<int64_t>(vocab_.is_continuation.size()) && vocab_.is_continuation[id] != 0;
    if (joins) words.back().push_back(p);
    else words.push_back({p});
    after_special = false;
  }
  int64_t to_predict = std::max<int64_t>(1, static_cast<int64_t>(std::nearbyint(real * cfg_.masked_lm_prob)));
  if (cfg_.max_predictions > 0) to_predict = std::min(to_predict, cfg_.max_predictions);

  std::vector<double> ngram_p(static_cast<size_t>(cfg_.max_ngram));
  for (int k = 0; k < cfg_.max_ngram; ++k) ngram_p[k] = 1.0 / (k + 1);  // P(n) ~ 1/n
  std::vector<int64_t> order(words.size());
  for (size_t k = 0; k < order.size(); ++k) order[k] = static_cast<int64_t>(k);
  rng.shuffle(order);

  const std::vector<int64_t> original = tok;
  s.labels.assign(static_cast<size_t>(cfg_.seq_length), -1);
  s.loss_mask.assign(static_cast<size_t>(cfg_.seq_length), 0);
  std::vector<uint8_t> masked(static_cast<size_t>(real), 0);
  int64_t num_masked = 0;
  for (int64_t w : order) {
    if (num_masked >= to_predict) break;
    const int64_t avail = std::min<int64_t>(cfg_.max_ngram, static_cast<int64_t>(words.size()) - w);
    std::vector<double> p(ngram_p.begin(), ngram_p.begin() + avail);
    int64_t ngram = numpy_choice(rng, p) + 1;
    // Shrink the n-gram until it does not overshoot the number to predict.
    std::vector<int64_t> positions;
    for (; ngram >= 1; --ngram) {
      positions.clear();
      for (int64_t k = w; k < w + ngram; ++k) positions.insert(positions.end(), words[k].begin(), words[k].end());
      if (num_masked + static_cast<int64_t>(positions.size()) <= to_predict) break;
    }
    if (ngram == 0) continue;
    if (std::any_of(positions.begin(), positions.end(), [&](int64_t q) { return masked[q] != 0; })) continue;
    for (int64_t q : positions) {
      masked[q] = 1;
      s.labels[q] = original[q];
      s.loss_mask[q] = 1;
      if (numpy_random(rng) < 0.8) tok[q] = vocab_.mask;                                // 80%: [MASK]
      else if (numpy_random(rng) >= 0.5) tok[q] = numpy_randint(rng, 0, vocab_.vocab_size);  // 10%: random
      // else 10%: unchanged
    }
    num_masked += static_cast<int64_t>(positions.size());
  }

  tok.resize(static_cast<size_t>(cfg_.seq_length), vocab_.pad);
  types.resize(static_cast<size_t>(cfg_.seq_length), 0);
  s.padding_mask.assign(static_cast<size_t>(cfg_.seq_length), 0);
  std::fill(s.padding_mask.begin(), s.padding_mask.begin() + real, 1);
  return s;
}

}  // namespace megahost::core::data
