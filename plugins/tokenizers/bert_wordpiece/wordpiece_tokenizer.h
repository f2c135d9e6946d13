// BERT WordPiece (Megatron's BertWordPieceLowerCase / BertWordPieceCase) as a plain C++ class.
//
// encode: BasicTokenizer words -> greedy longest-match-first WordPiece per word ("##" marks a
// piece that continues a word; a word with an unmatched rest, or over 200 code points, is one
// [UNK]) -> ids. No [CLS]/[SEP] are added, as Megatron's tokenize() adds none.
// decode: Megatron's convert_tokens_to_string: tokens joined by spaces, " ##" removed, then its
// clean-up of spaces before punctuation and English contractions (" ." -> ".", " n't" -> "n't").
//
// vocab_file (Megatron's --vocab-file): one token per line, id = line number from 0. Like
// Megatron's _BertWordPieceTokenizer, "[BOS]" and "[EOS]" are appended when absent, then
// vocab_extra_ids tokens "<extra_id_0>".., so vocab_size() counts them.
//
// One instance is shared by preprocessing workers: every const method is [thread-safe].
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "basic_tokenizer.h"
#include "megahost/sdk/error.h"

namespace megahost::tokenizers::bert {

// A load error about the vocab_file, kept apart from the hint so the plugin can also point at
// the recipe line. what() is "<message> HINT: <hint>".
class VocabError : public sdk::Error {
 public:
  VocabError(mh_status_code code, const std::string& message, std::string hint)
      : sdk::Error(code, message + " HINT: " + hint), message_(message), hint_(std::move(hint)) {}
  const std::string& message() const { return message_; }
  const std::string& hint() const { return hint_; }

 private:
  std::string message_, hint_;
};

struct SpecialIds {
  int32_t pad, unk, cls, sep, mask, bos, eos;
};

class BertWordPieceTokenizer {
 public:
  static constexpr size_t kMaxWordChars = 200;  // longer words are one [UNK]

  // Throws VocabError naming the file (and line) on any problem.
  BertWordPieceTokenizer(const std::string& vocab_file, bool lower_case, int64_t vocab_extra_ids = 0);

  // Appends the ids of utf8 to out; throws sdk::Error(MH_ERR_INVALID_ARG) on invalid UTF-8
  // (out is then unchanged). [thread-safe]
  void encode(std::string_view utf8, std::vector<int32_t>& out) const;
  std::vector<int32_t> encode(std::string_view utf8) const;

  // Megatron's decode; throws sdk::Error(MH_ERR_INVALID_ARG) on an id outside the vocabulary.
  // [thread-safe]
  void decode(const int32_t* ids, size_t n, std::string& out) const;
  std::string decode(const std::vector<int32_t>& ids) const;

  // The pieces of one word (code points), appended to out. [thread-safe]
  void wordpiece(const uint32_t* cps, size_t n, std::vector<int32_t>& out) const;

  int64_t vocab_size() const { return static_cast<int64_t>(tokens_.size()); }
  const std::string& token(int32_t id) const { return tokens_.at(static_cast<size_t>(id)); }
  std::optional<int32_t> find(std::string_view token) const;
  const SpecialIds& special() const { return special_; }
  bool lower_case() const { return basic_.lower_case(); }

 private:
  void load(const std::string& path);
  void add_token(const std::string& token);  // Megatron's add_token: appended when absent
  void index();                              // builds the lookup maps over tokens_

  // token -> id, open addressing with linear probing at load <= 1/2: a lookup is one hash,
  // usually one probe and one memcmp. Keys are views into tokens_. A "##x" token is also keyed
  // as ("x", continuation), so WordPiece looks up pieces without building "##" strings.
  class TokenTable {
   public:
    void build(const std::vector<std::string>& tokens);
    int32_t find(std::string_view key, bool continuation) const;  // -1 when absent

   private:
    struct Slot {
      uint64_t hash;
      const char* data;
      uint32_t len;
      int32_t id;  // -1: empty
    };
    static uint64_t hash(std::string_view key, bool continuation);
    void insert(std::string_view key, bool continuation, int32_t id);
    std::vector<Slot> slots_;
    uint64_t mask_ = 0;
  };

  BasicTokenizer basic_;
  std::vector<std::string> tokens_;  // id -> token
  TokenTable table_;
  size_t max_start_bytes_ = 0, max_continuation_bytes_ = 0;  // longest keys: bounds the search
  SpecialIds special_{};
};

}  // namespace megahost::tokenizers::bert
