// Megatron's three SentencePiece tokenizers over one libsentencepiece model, as a C++ class.
//
// Megatron (megatron/training/tokenizer/tokenizer.py) has three classes over one .model file
// (--tokenizer-model); they differ in what they add around sp.encode_as_ids:
//
//   SpmVariant::Megatron   _SentencePieceTokenizer ("SentencePieceTokenizer"): appends the
//       special tokens <CLS> <SEP> <EOD> <MASK>, then the pad, bos and eos pieces (or <PAD> <BOS>
//       <EOS> when the model has none), then <extra_id_0..N-1>, each at the next free id unless the
//       model already has that piece. encode splits the text at any of those tokens' text (the
//       earliest match wins, ties go to the first added) and encodes the pieces between;
//       decode writes each special token as " <TOKEN> " between decoded runs. eod = <EOD>.
//   SpmVariant::Gpt        _GPTSentencePieceTokenizer: encode = sp.encode_as_ids(text),
//       decode = sp.decode_ids(ids); eod = eos.
//   SpmVariant::Llama2     _Llama2Tokenizer: encode = [bos] + sp.encode(text) (Megatron's
//       tokenize(s, bos=True, eos=False) default, used by preprocess_data.py); eod = eos.
//
// libsentencepiece is reached through spm_shim.h (a small library opened with RTLD_DEEPBIND,
// because Debian's libsentencepiece bundles and exports a protobuf that clashes with libtorch's).
//
// Thread safety: SentencePieceProcessor::Encode / Decode are const and the model, normalizer and
// prefix matcher they read hold no mutable state (sentencepiece 0.1.97: only SampleEncode draws
// from a thread-local RNG, and it is not used here), so every const method here is [thread-safe].
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "megahost/sdk/error.h"
#include "spm_shim.h"

namespace megahost::tokenizers {

enum class SpmVariant { Megatron, Gpt, Llama2 };

// A model file that cannot be used. what() is "<message> HINT: <hint>"; message names the file.
class SpmLoadError : public sdk::Error {
 public:
  SpmLoadError(const std::string& message, std::string hint)
      : sdk::Error(MH_ERR_INVALID_ARG, message + " HINT: " + hint), message_(message), hint_(std::move(hint)) {}
  const std::string& message() const { return message_; }
  const std::string& hint() const { return hint_; }

 private:
  std::string message_, hint_;
};

class SpmTokenizer {
 public:
  // Loads model_file through the bridge library shim_path (libmegahost_spm_shim.so); throws
  // SpmLoadError naming the model file, or sdk::Error when the bridge cannot be loaded.
  // vocab_extra_ids (Megatron's --vocab-extra-ids) only applies to SpmVariant::Megatron.
  SpmTokenizer(const std::string& shim_path, const std::string& model_file, SpmVariant variant,
               int vocab_extra_ids = 0);
  ~SpmTokenizer();
  SpmTokenizer(const SpmTokenizer&) = delete;
  SpmTokenizer& operator=(const SpmTokenizer&) = delete;

  // Appends the ids of `text` to out; throws sdk::Error(MH_ERR_INVALID_ARG) on invalid UTF-8
  // (out is then unchanged). [thread-safe]
  void encode(std::string_view text, std::vector<int32_t>& out) const;
  std::vector<int32_t> encode(std::string_view text) const;

  // Appends the text of ids[0..n) to out; throws sdk::Error(MH_ERR_INVALID_ARG) on an id outside
  // the vocabulary (out is then unchanged). [thread-safe]
  void decode(const int32_t* ids, size_t n, std::string& out) const;
  std::string decode(const std::vector<int32_t>& ids) const;

  // Model pieces, plus the tokens Megatron adds (SpmVariant::Megatron only).
  int64_t vocab_size() const { return piece_size_ + static_cast<int64_t>(added_.size()); }
  int64_t piece_size() const { return piece_size_; }
  // By MH_TOKEN_* name ("eod", "bos", "eos", "pad", "unk", "cls", "sep", "mask"); nullopt when
  // this variant has no such token (e.g. pad in a model trained with pad_id=-1).
  std::optional<int32_t> special_token(std::string_view name) const;
  SpmVariant variant() const { return variant_; }

 private:
  void init_special_tokens(int vocab_extra_ids);
  void add_megatron_special_tokens(int vocab_extra_ids);
  std::string piece(int32_t id) const;
  void check_ids(const int32_t* ids, size_t n) const;
  void sp_encode(std::string_view text, std::vector<int32_t>& out) const;
  void sp_decode(const int32_t* ids, size_t n, std::string& out) const;

  std::string model_file_;
  SpmVariant variant_;
  const mh_spm_shim_api* sp_ = nullptr;
  mh_spm_model* model_ = nullptr;
  int64_t piece_size_ = 0;
  std::vector<std::string> added_;  // pieces of ids piece_size_, piece_size_ + 1, ...
  // Megatron variant: the special tokens as Megatron's _special_tokens dict, in insertion order.
  std::vector<std::pair<std::string, int32_t>> specials_;
  std::vector<std::pair<std::string, int32_t>> named_;  // MH_TOKEN_* name -> id
};

}  // namespace megahost::tokenizers
