// GPT-2's pre-tokenizer, written by hand (no regex engine). It splits text exactly as
//
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//
// does under Python's `regex` (leftmost alternative that matches wins, each quantifier greedy).
// BPE then runs inside each piece only, so pieces never merge across these boundaries.
#pragma once

#include <cstddef>
#include <string_view>

namespace megahost::tokenizers {

// End (exclusive byte offset) of the piece that starts at `pos` (< text.size()).
// Works on arbitrary bytes: malformed UTF-8 bytes count as "other" characters. [thread-safe]
size_t gpt2_next_piece(std::string_view text, size_t pos);

// Calls fn(std::string_view piece) for every piece of text, in order.
template <typename Fn>
void gpt2_split(std::string_view text, Fn&& fn) {
  for (size_t pos = 0; pos < text.size();) {
    const size_t end = gpt2_next_piece(text, pos);
    fn(text.substr(pos, end - pos));
    pos = end;
  }
}

}  // namespace megahost::tokenizers
