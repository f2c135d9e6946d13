// megahost core — `megahost preprocess`: JSON lines -> Megatron .bin/.idx, byte-identical to
// Megatron's tools/preprocess_data.py for the same input and tokenizer, streaming and multi-threaded.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "megahost/core/plugins.h"

namespace megahost::core {

struct PreprocessOptions {
  std::string input;                            // JSON lines file
  std::string output_prefix;                    // writes <prefix>_<key>_document.bin/.idx
  std::vector<std::string> json_keys{"text"};
  std::string tokenizer_type;                   // Megatron name (GPT2BPETokenizer) or plugin id
  std::string vocab_file, merge_file, tokenizer_model;
  std::string dataset_format = "mmap-indexed";
  bool append_eod = false;
  int workers = 1;
  int64_t log_interval = 100000;
};

struct PreprocessStats {
  int64_t documents = 0, skipped_blank_lines = 0;
  int64_t tokens = 0;
  double bytes = 0, seconds = 0;
  std::vector<std::string> outputs;  // prefixes written
};

PreprocessStats preprocess(const PreprocessOptions& opts, const PluginRegistry& reg);

}  // namespace megahost::core
