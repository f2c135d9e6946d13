// Megatron's NullTokenizer: the text already is token ids, written as decimal integers
// separated by whitespace ("12 7 3"). Used to train on pre-tokenized or synthetic data.
//
// With vocab_size = V (Megatron's --vocab-size): ids 0..V-1 are the user's, V is the
// end-of-document token (eod = eos = V), and vocab_size() is V + 1, as _NullTokenizer.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace megahost::tokenizers {

class NullTokenizer {
 public:
  explicit NullTokenizer(int64_t vocab_size_without_eod) : eod_(vocab_size_without_eod) {}

  // Appends the ids of text; throws sdk::Error(MH_ERR_INVALID_ARG) naming the word when one
  // is not a decimal integer or is outside [0, vocab_size()) (out is then unchanged). Empty or
  // all-whitespace text gives no ids. [thread-safe]
  void encode(std::string_view text, std::vector<int32_t>& out) const;

  // The ids as decimal integers joined by single spaces; throws sdk::Error(MH_ERR_INVALID_ARG)
  // on an id outside [0, vocab_size()). [thread-safe]
  void decode(const int32_t* ids, size_t n, std::string& out) const;

  int64_t vocab_size() const { return eod_ + 1; }
  int32_t eod() const { return static_cast<int32_t>(eod_); }

 private:
  int64_t eod_;
};

}  // namespace megahost::tokenizers
