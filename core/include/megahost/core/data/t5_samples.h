// megahost core — Megatron's T5 samples (T5MaskedWordPieceDataset) over a sentence-split corpus.
//
// Input: a corpus written by `megahost preprocess --split-sentences` (as for BERT).
//
// Sample index: Megatron's BERT sentence runs (bert_samples.h) with target encoder_seq_length - 2
// and one sentence minimum (no sentence pairs), shuffled; cached as BERT's.
//
// Sample i (Megatron's t5_dataset.py __getitem__), from numpy RandomState((seed + i) mod 2^32):
//  - tokens = the run's sentences concatenated, cut to the row's target length.
//  - masking (masked_dataset.py with pretrain_t5's settings): candidate words (a "##" piece joins
//    its word: masking_do_full_word); num_to_predict = min(floor(masked_lm_prob * target),
//    max(1, round(|tokens| * masked_lm_prob))) with target the row's target length;
//    words are shuffled; from each, a span of n words with n = min(geometric(0.2), max_ngram = 10)
//    (SpanBERT's distribution, mean ~4.5 words), shrunk while it would overshoot num_to_predict,
//    skipped if it overlaps a span already taken. Spans are then sorted by position.
//    megahost addition: a span is also skipped when it would need more sentinels than the
//    vocabulary has or overflow decoder_seq_length (Megatron stops with an assertion there).
//  - span k -> sentinel k (<extra_id_k>):
//      encoder input = tokens with each span replaced by its sentinel            [enc] + [PAD]
//      decoder input = [BOS] sentinel_0 span_0... sentinel_1 span_1...           [dec] + [PAD]
//      labels        = sentinel_0 span_0... sentinel_1 span_1... [EOS]            [dec] + -1
//    loss_mask = 1 on the decoder's real positions; enc_mask / dec_mask = 1 on real tokens.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "megahost/core/data/bert_samples.h"
#include "megahost/core/data/index_cache.h"
#include "megahost/core/data/numpy_random.h"
#include "megahost/core/data/token_source.h"

namespace megahost::core::data {

// The tokenizer facts T5 samples need: Megatron's _BertWordPieceTokenizer appends [BOS], [EOS]
// and <extra_id_0>.. (vocab_extra_ids) to the WordPiece vocabulary.
struct T5Vocab {
  int64_t bos = -1, eos = -1, pad = -1;
  std::vector<int64_t> sentinels;         // <extra_id_0>, <extra_id_1>, ... in order
  std::vector<uint8_t> is_continuation;   // "##" pieces (whole-word masking); may be empty
};

// The vocabulary as Megatron's BERT tokenizer builds it: the file's pieces, then [BOS] and [EOS]
// when absent, then <extra_id_0> .. <extra_id_{extra_ids - 1}> when absent.
std::vector<std::string> megatron_wordpiece_vocab(std::vector<std::string> file_pieces, int64_t extra_ids);
// The T5 facts of such a vocabulary; throws core::Error naming `where` when [PAD] is missing.
T5Vocab t5_vocab_of(const std::vector<std::string>& pieces, const std::string& where);

struct T5SampleConfig {
  int64_t encoder_seq_length = 512;  // --encoder-seq-length (= --seq-length)
  int64_t decoder_seq_length = 128;  // --decoder-seq-length
  int64_t num_samples = 0;           // requested (> 0)
  uint32_t seed = 1234;
  double masked_lm_prob = 0.15;      // --mask-prob
  double short_seq_prob = 0.1;       // --short-seq-prob
  int max_ngram = 10;                // pretrain_t5: masking_max_ngram = 10
  double geometric_p = 0.2;          // pretrain_t5: masking_use_geometric_distribution (SpanBERT's p)
  bool whole_word_masking = true;    // pretrain_t5: masking_do_full_word = True
  int64_t target_length() const { return encoder_seq_length - 2; }  // Megatron: "<bos> and <eos>"
  // The most tokens a sample masks: floor((encoder_seq_length - 2) * masked_lm_prob), at least 1.
  int64_t max_predictions() const;
  // The most spans a sample can hold: each span takes >= 2 decoder slots after [BOS].
  int64_t max_spans() const;
};

// Throws core::Error naming the bad setting with a HINT: lengths, rates, a decoder too short for
// the masked tokens, a vocabulary with too few sentinels.
void validate_t5_config(const T5SampleConfig& cfg, const T5Vocab& vocab);

struct T5Sample {
  std::vector<int64_t> text_enc;      // [enc] tokens with spans -> sentinels, [PAD] after
  std::vector<int64_t> text_dec;      // [dec] [BOS] sentinel span ..., [PAD] after
  std::vector<int64_t> labels;        // [dec] sentinel span ... [EOS], -1 after
  std::vector<int64_t> loss_mask;     // [dec] 1 on real decoder positions
  std::vector<int64_t> enc_mask;      // [enc] 1 on real tokens
  std::vector<int64_t> dec_mask;      // [dec] 1 on real tokens
  int64_t truncated = 0;              // 1 = the run was cut to its target
  int64_t num_tokens = 0;             // tokens before masking
  int64_t num_masked = 0;             // tokens moved to the decoder
  int64_t num_spans = 0;
};

// The span corruption of one text (|tokens| <= target) with the sample's generator: what
// sample(i) does once the run is read and cut (Megatron's _create_masked_lm_predictions and the
// encoder / decoder assembly of T5MaskedWordPieceDataset.__getitem__).
T5Sample corrupt_spans(const std::vector<int64_t>& tokens, int64_t target, const T5SampleConfig& cfg,
                       const T5Vocab& vocab, NumpyRandomState& rng);

class T5Dataset {
 public:
  // Builds (or loads from opts.folder) the sample index of `range`; `source` must outlive it.
  T5Dataset(const TokenSource& source, std::vector<int64_t> document_indices, DocumentRange range, T5SampleConfig cfg,
            T5Vocab vocab, std::string what, const BertCacheOptions& opts = {});

  int64_t size() const { return static_cast<int64_t>(index_.size() / 3); }
  const T5SampleConfig& config() const { return cfg_; }
  bool loaded_from_cache() const { return loaded_; }
  const std::string& cache_files() const { return files_; }
  const std::vector<int64_t>& sample_index() const { return index_; }

  // Sample i in [0, size()), rebuilt from (seed, i) alone. Thread-safe.
  T5Sample sample(int64_t i) const;

 private:
  const TokenSource& source_;
  std::vector<int64_t> document_indices_;
  DocumentRange range_;
  T5SampleConfig cfg_;
  T5Vocab vocab_;
  std::string what_;
  std::vector<int64_t> index_;  // [N, 3] (first sentence, end sentence, target)
  bool loaded_ = false;
  std::string files_;
};

}  // namespace megahost::core::data
