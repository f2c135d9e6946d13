// The split regexes of byte-level BPE tokenizers, written by hand as scanners (no regex engine
// with \p{L} is available): exactly the patterns below are implemented, and a
// tokenizer.json whose Split pattern is anything else is refused at load time.
//
//   kLlama3  (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
//             ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
//   kQwen2   the same with \p{N} instead of \p{N}{1,3} (Qwen2, Qwen3: one digit per piece)
//   kGpt2    's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//            (ByteLevel's use_regex; GPT-2, GPT-NeoX, RoBERTa)
//
// Both patterns match at every position, so with behavior "Isolated" the matches tile the text.
#pragma once

#include <optional>
#include <string_view>
#include <vector>

namespace megahost::hf {

enum class SplitPattern { kGpt2, kLlama3, kQwen2 };

// Which implemented pattern a tokenizer.json "Regex" string is; nullopt when none.
std::optional<SplitPattern> recognize_split_regex(std::string_view regex);
const char* split_pattern_name(SplitPattern p);

// Appends the end offsets (in bytes) of the consecutive matches of `pattern` in text to ends;
// the first match starts at 0 and the last ends at text.size(). Malformed UTF-8 bytes are
// single "other" characters. [thread-safe]
void split_ends(SplitPattern pattern, std::string_view text, std::vector<size_t>& ends);

}  // namespace megahost::hf
