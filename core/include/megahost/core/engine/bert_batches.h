// megahost core — Megatron's BERT data for the training loop: the train/valid/test
// BERTMaskedWordPieceDataset splits of a `--split-sentences` corpus (data/bert_samples.h) and the
// micro-batch tensors a BERT model plugin reads.
//
// Selected by [data] dataset = "bert" (or "auto" with [model] plugin = "bert"). Keys read:
// [data] data_path (one prefix), split, mask_prob, short_seq_prob, data_cache_path;
// [model] seq_length, bert_binary_head; [tokenizer] vocab_file (the WordPiece vocabulary: the
// [CLS] [SEP] [MASK] [PAD] ids and the "##" pieces for whole-word masking).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "megahost/core/data/bert_samples.h"
#include "megahost/core/engine/batches.h"
#include "megahost/core/engine/samples.h"

namespace megahost::core {

// True when the recipe trains on BERT samples.
bool bert_data_selected(const Recipe& r);

// One split's BERT samples. sample() writes the masked tokens (then one [PAD]) for generic
// readers; the trainer's batches come from bert_sample().
class BertSampleSource : public SampleSource {
 public:
  BertSampleSource(std::shared_ptr<data::TokenSource> sentences, std::unique_ptr<data::BertDataset> dataset)
      : sentences_(std::move(sentences)), dataset_(std::move(dataset)) {}
  uint64_t size() const override { return static_cast<uint64_t>(dataset_->size()); }
  void sample(uint64_t i, int64_t* out) const override;
  data::BertSample bert_sample(uint64_t i) const { return dataset_->sample(static_cast<int64_t>(i)); }
  const data::BertDataset& dataset() const { return *dataset_; }

 private:
  std::shared_ptr<data::TokenSource> sentences_;  // outlives dataset_
  std::unique_ptr<data::BertDataset> dataset_;
};

// The BERT splits of [data] data_path (documents split by `split`, as Megatron splits sentence
// datasets). Throws core::Error naming the recipe key with a HINT.
SplitSamples build_bert_samples(const Recipe& r, DatasetFormat& format, int64_t seq_length,
                                const SampleCounts& counts, uint64_t seed);

// Samples first .. first + count - 1 (modulo the source size) as Megatron's BERT batch:
//   tokens, token_types, labels (-1 where not masked), padding_mask (1 on real tokens) [b, s] int64,
//   loss_mask [b, s] float32 (1 where masked), is_random [b] int64 (sentence order: 1 = swapped).
MicroBatchTensors make_bert_batch(const BertSampleSource& src, uint64_t first, int64_t count,
                                  const at::Device& device);

}  // namespace megahost::core
