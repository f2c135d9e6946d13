// megahost core — Megatron's BERT samples (BERTMaskedWordPieceDataset) over a sentence-split corpus.
//
// Input: a corpus written by `megahost preprocess --split-sentences` — one sequence per sentence,
// documents given by the .idx document indices (D + 1 boundaries in sentence space).
//
// Sample index (Megatron's helpers.cpp build_mapping): walk the documents of the split, epoch after
// epoch until num_samples are reached (whole epochs, so there may be more). Each document with at
// least min_sentences (2 with the binary head, else 1) sentences and none longer than 512 tokens is
// cut into runs of consecutive sentences: a run ends once it holds >= target tokens and >= min
// sentences while more than one sentence remains, or at the document's end. target is
// seq_length - 3, or with probability short_seq_prob (1 in round(1/p) draws of a std::mt19937(seed))
// a random length in [2, seq_length - 3]. Runs never cross documents. The rows
// (first sentence, end sentence, target) are then shuffled by a std::mt19937_64(seed + 1).
//
// Sample i (Megatron's __getitem__), from numpy RandomState((seed + i) mod 2^32) alone, so any
// sample can be rebuilt on its own:
//  - binary head: pivot p (1 for 2 sentences, else uniform in [1, n)); A = sentences [0, p),
//    B = [p, n); with probability 0.5 A and B are swapped and is_random = 1 (the sentence-order
//    label: 1 = swapped, 0 = in order). Without the binary head: A = all sentences, no B.
//  - truncate: while |A| + |B| > target, drop one token (from the longer one, B on ties), at its
//    front or back with probability 0.5.
//  - tokens = [CLS] A [SEP] (B [SEP]), token types 0 for [CLS] A [SEP], 1 for B [SEP].
//  - masking: candidates are all non-[CLS]/[SEP] positions, grouped into words (a "##" piece
//    joins its word with whole_word_masking; one right after [CLS]/[SEP], left by truncation,
//    starts its own word, where Megatron would join it to the word before the [SEP]). num_to_predict = max(1, min(max_predictions,
//    round(|tokens| * masked_lm_prob))), |tokens| counting [CLS]/[SEP] as Megatron does. Candidate
//    words are shuffled; from each, an n-gram of n <= max_ngram words (P(n) ~ 1/n) is taken,
//    shrunk while it would overshoot num_to_predict, skipped if it overlaps. Every chosen token:
//    80% [MASK], 10% a random id in [0, vocab_size), 10% unchanged.
//  - labels = original id at masked positions, -1 elsewhere; loss_mask 1 at masked positions;
//    padding to seq_length with [PAD]; padding_mask 1 on real tokens, token types 0 on padding.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "megahost/core/data/index_cache.h"
#include "megahost/core/data/token_source.h"

namespace megahost::core::data {

// The tokenizer facts BERT samples need (from the tokenizer plugin's special-token API).
struct BertVocab {
  int64_t cls = -1, sep = -1, mask = -1, pad = -1;
  int64_t vocab_size = 0;                // random replacements are drawn from [0, vocab_size)
  // is_continuation[id] != 0 for a WordPiece continuation piece ("##..."); may be empty
  // (every token then starts a word). Needed only for whole-word masking.
  std::vector<uint8_t> is_continuation;
};

// is_continuation from the pieces of a vocabulary (id = position): pieces starting with "##".
std::vector<uint8_t> wordpiece_continuations(const std::vector<std::string>& pieces);

struct BertSampleConfig {
  int64_t seq_length = 512;         // padded sample length (Megatron's --seq-length)
  int64_t num_samples = 0;          // requested (> 0); whole epochs are built until reached
  uint32_t seed = 1234;
  double masked_lm_prob = 0.15;     // --mask-prob
  double short_seq_prob = 0.1;      // --short-seq-prob
  bool binary_head = true;          // --bert-binary-head (sentence-order prediction)
  bool whole_word_masking = true;   // Megatron's pretrain_bert: masking_do_full_word = True
  int max_ngram = 3;                // Megatron's pretrain_bert: masking_max_ngram = 3 (1: single words)
  // Cap on masked tokens per sample; 0 = no cap beyond round(|tokens| * masked_lm_prob).
  int64_t max_predictions = 0;
  int min_sentences() const { return binary_head ? 2 : 1; }
  int64_t target_length() const { return seq_length - 3; }  // room for [CLS] [SEP] [SEP]
};

// Throws core::Error naming the bad key (seq_length, masked_lm_prob, ...) with a HINT.
void validate_bert_config(const BertSampleConfig& cfg, const BertVocab& vocab);

// Document ids [begin, end): Megatron splits sentence datasets by document, so a split's range is
// split_sequence_ranges(split, number of documents)[k] read as document ids.
struct DocumentRange {
  int64_t begin = 0, end = 0;
  int64_t size() const { return end - begin; }
};

// The sample index: rows (first sentence, end sentence (exclusive), target length), shuffled.
// `document_indices` are the .idx boundaries (D + 1). Throws core::Error when the range holds no
// usable document (Megatron would loop forever) or the configuration is bad.
std::vector<int64_t> build_bert_sample_index(const std::vector<int64_t>& document_indices,
                                             const std::vector<int32_t>& sentence_lengths, DocumentRange range,
                                             const BertSampleConfig& cfg, const std::string& what);

struct BertSample {
  std::vector<int64_t> tokens;        // [seq_length] [CLS] A [SEP] B [SEP] [PAD]...
  std::vector<int64_t> token_types;   // [seq_length] 0 for [CLS] A [SEP], 1 for B [SEP], 0 padding
  std::vector<int64_t> labels;        // [seq_length] original id where masked, -1 elsewhere
  std::vector<int64_t> loss_mask;     // [seq_length] 1 where masked
  std::vector<int64_t> padding_mask;  // [seq_length] 1 on real tokens, 0 on padding
  int64_t is_random = 0;              // 1 = A and B swapped (binary-head label)
  int64_t truncated = 0;              // 1 = tokens were dropped to fit the target
  int64_t first_sentence = 0, end_sentence = 0;  // the sentences it was built from
};

struct BertCacheOptions {
  std::string folder;        // "" = build in memory; else <folder>/<md5>-BERTMaskedWordPieceDataset-<split>-*
  std::string dataset_path;  // the prefix, for the description
  Split split = Split::Train;
  CacheLog log;              // may be empty
};

// Throws unless `range` lies inside the documents of `document_indices` (D + 1 boundaries).
void check_document_range(const std::vector<int64_t>& document_indices, DocumentRange range, const std::string& what);

// A sentence-run sample index (the rows of build_bert_sample_index) behind a BERT or T5 dataset,
// cached as <opts.folder>/<md5(description)>-<dataset_class>-<split>-{sample_index.npy,
// description.txt}: loaded when the files hold rows inside `range` with targets in
// [min_target, max_target], else made with `build` and written (a failed write only warns).
// `kind` ("BERT", "T5") names the index in the warnings.
struct CachedSampleIndex {
  std::vector<int64_t> index;
  std::string files;  // "<folder>/<md5>-...-", "" when not cached
  bool loaded = false;
};
CachedSampleIndex cached_sample_index(const std::string& description, const char* dataset_class, const char* kind,
                                      const BertCacheOptions& opts, const std::vector<int64_t>& document_indices,
                                      DocumentRange range, int64_t min_target, int64_t max_target,
                                      const std::string& what, const std::function<std::vector<int64_t>()>& build);

class BertDataset {
 public:
  // Builds (or loads from opts.folder) the sample index of `range`. `source` (sentences) must
  // outlive the dataset. `what` names it in errors, e.g. "corpus_text_sentence (train)".
  BertDataset(const TokenSource& source, std::vector<int64_t> document_indices, DocumentRange range,
              BertSampleConfig cfg, BertVocab vocab, std::string what, const BertCacheOptions& opts = {});

  int64_t size() const { return static_cast<int64_t>(index_.size() / 3); }
  const BertSampleConfig& config() const { return cfg_; }
  bool loaded_from_cache() const { return loaded_; }
  const std::string& cache_files() const { return files_; }  // "<folder>/<md5>-...-" or ""
  const std::vector<int64_t>& sample_index() const { return index_; }

  // Sample i in [0, size()), rebuilt from (seed, i) alone. Thread-safe.
  BertSample sample(int64_t i) const;

 private:
  const TokenSource& source_;
  std::vector<int64_t> document_indices_;
  DocumentRange range_;
  BertSampleConfig cfg_;
  BertVocab vocab_;
  std::string what_;
  std::vector<int64_t> index_;  // [N, 3]
  bool loaded_ = false;
  std::string files_;
};

}  // namespace megahost::core::data
