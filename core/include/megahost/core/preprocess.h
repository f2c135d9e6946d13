// megahost core — `megahost preprocess`: JSON lines -> Megatron .bin/.idx, byte-identical to
// Megatron's tools/preprocess_data.py for the same input and tokenizer, streaming and
// multi-threaded; and `--merge`, Megatron's tools/merge_datasets.py. docs/data.md.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "megahost/core/plugins.h"

namespace megahost::core {

struct PreprocessOptions {
  // Files or glob patterns (a pattern's matches sorted by name), read in this order as one
  // stream of JSON lines into one output; plain, gzip or zstd (by magic bytes).
  std::vector<std::string> inputs;
  std::string output_prefix;                    // writes <prefix>_<key>_document.bin/.idx
  std::vector<std::string> json_keys{"text"};
  std::string tokenizer_type;                   // Megatron name (GPT2BPETokenizer) or plugin id
  std::string vocab_file, merge_file, tokenizer_model;
  int64_t vocab_size = -1, vocab_extra_ids = -1;  // -1: not given (NullTokenizer / BERT extras)
  std::string dataset_format = "mmap-indexed";
  bool append_eod = false;
  bool split_sentences = false;                 // one sequence per sentence; <prefix>_<key>_sentence
  bool keep_newlines = false;                   // with split_sentences: whitespace after a sentence kept
  int workers = 1;
  int64_t log_interval = 100000;                // documents between progress lines (0: none)
};

struct PreprocessStats {
  int64_t documents = 0, skipped_blank_lines = 0;
  int64_t tokens = 0;
  double bytes = 0, seconds = 0;     // JSON lines bytes (decompressed)
  std::vector<std::string> outputs;  // prefixes written
};

PreprocessStats preprocess(const PreprocessOptions& opts, const PluginRegistry& reg);

// Megatron's merge_datasets.py: the shards appended in order into <output_prefix>.bin/.idx.
// `inputs`: one folder (every *.bin/*.idx pair in it, sorted by name, as Megatron) or prefixes.
struct MergeStats {
  std::vector<std::string> shards;
  uint64_t sequences = 0, documents = 0, tokens = 0;
  double seconds = 0;
};
MergeStats merge_datasets(const std::vector<std::string>& inputs, const std::string& output_prefix,
                          const PluginRegistry& reg, const std::string& dataset_format = "mmap-indexed");

}  // namespace megahost::core
