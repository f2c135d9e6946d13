// A Hugging Face tokenizer.json, run in C++: the parts its BPE tokenizers use (Llama-3, Qwen2/3,
// GPT-2, GPT-NeoX-style byte-level BPE; Llama-2-style SentencePiece BPE with byte fallback).
//
// encode(text):
//   1. added tokens (<|begin_of_text|>, <s>, ...) are cut out of the raw text first;
//   2. each remaining segment: normalizer (NFC, Prepend, Replace, Sequence) -> added tokens
//      with "normalized": true, found in the normalized text -> pre-tokenizer (Split with the
//      Llama-3, Qwen2 or GPT-2 regex, ByteLevel, Sequence) -> BPE model (bpe_model.h);
//   3. with add_special_tokens, the post-processor's tokens around it (TemplateProcessing's
//      "single", e.g. Llama-2's <s>; ByteLevel adds none).
// decode(ids): id -> token string (added tokens by content) -> decoder (decoder.h).
//
// Anything in the file this code does not implement is refused at load with a LoadError naming
// the component, never silently approximated. "truncation" and "padding" are ignored, as
// transformers does when it is not asked to truncate or pad.
//
// Special tokens (bos, eos, eod, pad, unk, cls, sep, mask): from tokenizer_config.json beside
// tokenizer.json ("bos_token", ...) when it exists, else well-known names among the added
// tokens (bos: <|begin_of_text|> <s> <|startoftext|> <bos>; eos: <|end_of_text|> </s>
// <|endoftext|> <eos>; unk: the model's unk_token, <unk>; pad: <pad> <|pad|> [PAD]; ...).
// eod = eos, as Megatron's HuggingFaceTokenizer (eod = eos_token_id).
//
// One instance is shared by worker threads: every const method is [thread-safe].
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "added_tokens.h"
#include "bpe_model.h"
#include "decoder.h"
#include "load_error.h"
#include "pretokenizer.h"

namespace megahost::hf {

class HfTokenizer {
 public:
  // path: a tokenizer.json, or a folder holding one. Throws LoadError naming the file.
  explicit HfTokenizer(const std::string& path);

  // Appends the ids of text (UTF-8; malformed bytes are accepted only when every byte can be
  // represented: byte-level or byte_fallback). [thread-safe]
  void encode(std::string_view text, bool add_special_tokens, std::vector<int32_t>& out) const;
  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens) const;
  // Appends the text of ids; throws sdk::Error(MH_ERR_INVALID_ARG) on an unknown id. [thread-safe]
  void decode(const int32_t* ids, size_t n, bool skip_special_tokens, std::string& out) const;
  std::string decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const;

  int64_t vocab_size() const { return vocab_size_; }
  // "bos", "eos", "eod", "pad", "unk", "cls", "sep", "mask". [thread-safe]
  std::optional<int32_t> special_token(std::string_view name) const;
  const std::string& file() const { return file_; }
  // One line: model, pre-tokenizer, vocabulary and merges, for logs.
  std::string summary() const;
  const BpeModel& model() const { return *model_; }

 private:
  void load(const std::string& text);
  void load_normalizer(const nlohmann::json& n);
  void load_pre_tokenizer(const nlohmann::json& p);
  void load_post_processor(const nlohmann::json& p);
  void load_special_names(const std::string& config_file);
  std::optional<int32_t> id_of(const std::string& content) const;
  void encode_segment(std::string_view segment, std::vector<int32_t>& out) const;
  void pre_tokenize(std::string_view text, size_t step, std::vector<int32_t>& out) const;

  struct NormalizeStep {
    enum Kind { kNfc, kPrepend, kReplace } kind;
    std::string pattern, content;  // Replace: pattern -> content; Prepend: content
  };
  void normalize(std::string_view text, std::string& out) const;
  void encode_normalized(std::string_view text, std::vector<int32_t>& out) const;
  std::string file_;
  std::unique_ptr<BpeModel> model_;
  bool byte_level_ = false;
  std::vector<NormalizeStep> normalizer_;
  std::vector<SplitPattern> splits_;
  std::vector<int32_t> prefix_, suffix_;  // post-processor ids around a single sequence
  std::vector<AddedToken> added_;
  std::vector<int32_t> added_index_;  // id -> index into added_, or -1
  AddedTokenMatcher matcher_;             // "normalized": false, matched in the raw text
  AddedTokenMatcher normalized_matcher_;  // "normalized": true, matched after the normalizer
  Decoder decoder_;
  int64_t vocab_size_ = 0;
  std::map<std::string, int32_t, std::less<>> special_;
};

}  // namespace megahost::hf
