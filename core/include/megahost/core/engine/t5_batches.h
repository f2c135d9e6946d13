// megahost core — Megatron's T5 data for the training loop: the train/valid/test
// T5MaskedWordPieceDataset splits of a `--split-sentences` corpus (data/t5_samples.h) and the
// micro-batch tensors a T5 model plugin reads.
//
// Selected by [data] dataset = "t5" (or "auto" with [model] plugin = "t5"). Keys read:
// [data] data_path (one prefix), split, mask_prob, short_seq_prob, data_cache_path;
// [model] encoder_seq_length (or seq_length), decoder_seq_length; [tokenizer] vocab_file and
// vocab_extra_ids (the sentinels <extra_id_0>.., Megatron's --vocab-extra-ids).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <memory>

#include "megahost/core/data/t5_samples.h"
#include "megahost/core/engine/batches.h"
#include "megahost/core/engine/samples.h"

namespace megahost::core {

// True when the recipe trains on T5 samples.
bool t5_data_selected(const Recipe& r);

// One split's T5 samples. sample() writes the encoder input (then its last token again) for
// generic readers; the trainer's batches come from t5_sample().
class T5SampleSource : public SampleSource {
 public:
  T5SampleSource(std::shared_ptr<data::TokenSource> sentences, std::unique_ptr<data::T5Dataset> dataset)
      : sentences_(std::move(sentences)), dataset_(std::move(dataset)) {}
  uint64_t size() const override { return static_cast<uint64_t>(dataset_->size()); }
  void sample(uint64_t i, int64_t* out) const override;
  data::T5Sample t5_sample(uint64_t i) const { return dataset_->sample(static_cast<int64_t>(i)); }
  const data::T5Dataset& dataset() const { return *dataset_; }

 private:
  std::shared_ptr<data::TokenSource> sentences_;  // outlives dataset_
  std::unique_ptr<data::T5Dataset> dataset_;
};

// The T5 splits of [data] data_path (documents split by `split`). encoder_seq_length is the
// trainer's sample length. Throws core::Error naming the recipe key with a HINT.
SplitSamples build_t5_samples(const Recipe& r, DatasetFormat& format, int64_t encoder_seq_length,
                              const SampleCounts& counts, uint64_t seed);

// Samples first .. first + count - 1 (modulo the source size) as Megatron's T5 batch:
//   text_enc, enc_mask [b, enc] int64; text_dec, labels (-1 on padding), dec_mask [b, dec] int64;
//   loss_mask [b, dec] float32 (1 on the decoder's real positions).
MicroBatchTensors make_t5_batch(const T5SampleSource& src, uint64_t first, int64_t count, const at::Device& device);

}  // namespace megahost::core
