#include "null_tokenizer.h"

#include <limits>

#include "megahost/sdk/error.h"

namespace megahost::tokenizers {
namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'; }

}  // namespace

void NullTokenizer::encode(std::string_view text, std::vector<int32_t>& out) const {
  const size_t first = out.size();
  size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && is_space(text[i])) ++i;
    if (i == text.size()) break;
    const size_t start = i;
    while (i < text.size() && !is_space(text[i])) ++i;
    const std::string_view word = text.substr(start, i - start);
    // Optional sign, then digits (Python's int() would also take "1_000"; ids are never
    // written that way). More than 18 digits saturates: out of range either way.
    const bool negative = word[0] == '-';
    const size_t sign = (word[0] == '+' || negative) ? 1 : 0;
    bool is_int = word.size() > sign;
    int64_t v = 0;
    for (size_t k = sign; is_int && k < word.size(); ++k) {
      is_int = word[k] >= '0' && word[k] <= '9';
      v = k - sign < 18 ? v * 10 + (word[k] - '0') : std::numeric_limits<int64_t>::max();
    }
    if (negative) v = -v;
    if (!is_int || v < 0 || v >= vocab_size()) {
      out.resize(first);
      if (!is_int)
        throw sdk::Error(MH_ERR_INVALID_ARG,
                         sdk::str_cat("null tokenizer: '", word.substr(0, 40), "' (byte ", start,
                                      ") is not an integer id HINT: NullTokenizer text is token ids written as "
                                      "integers separated by spaces, e.g. \"12 7 3\""));
      throw sdk::Error(MH_ERR_INVALID_ARG,
                       sdk::str_cat("null tokenizer: id ", word.substr(0, 40), " (byte ", start, ") is outside [0, ",
                                    vocab_size(),
                                    ") HINT: ids are below vocab_size (Megatron's --vocab-size), or equal to it for eod"));
    }
    out.push_back(static_cast<int32_t>(v));
  }
}

void NullTokenizer::decode(const int32_t* ids, size_t n, std::string& out) const {
  std::string text;
  for (size_t i = 0; i < n; ++i) {
    MH_CHECK(ids[i] >= 0 && ids[i] < vocab_size(), MH_ERR_INVALID_ARG, "null tokenizer decode: id ", ids[i],
             " (position ", i, ") is outside [0, ", vocab_size(), ") HINT: decode ids of the same vocab_size");
    if (i > 0) text.push_back(' ');
    text += std::to_string(ids[i]);
  }
  out += text;
}

}  // namespace megahost::tokenizers
