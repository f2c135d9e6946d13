#include "pretokenizer.h"

#include <cstdint>

#include "unicode_classes.h"

namespace megahost::hf {
namespace {

constexpr std::string_view kLlama3Regex =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
constexpr std::string_view kQwen2Regex =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
constexpr std::string_view kGpt2Regex =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

// One decoded character of the text.
struct Char {
  uint32_t cp;
  uint32_t end;  // byte offset just past it
  CharClass cls;
};

inline bool is_crlf(const Char& c) { return c.cp == '\r' || c.cp == '\n'; }

// Case-insensitive ASCII letter of a contraction; Unicode case folding also maps U+017F (long s)
// to 's', which (?i:'s) therefore matches.
inline uint32_t fold(uint32_t cp) {
  if (cp >= 'A' && cp <= 'Z') return cp + 32;
  if (cp == 0x17F) return 's';
  return cp;
}

// Length in characters of the contraction at i (0 if none). Only called when chars[i] is '\''.
size_t contraction(const std::vector<Char>& c, size_t i, bool ignore_case) {
  const size_t n = c.size();
  if (i + 1 >= n) return 0;
  auto at = [&](size_t k) { return ignore_case ? fold(c[k].cp) : c[k].cp; };
  const uint32_t a = at(i + 1);
  if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
  if (i + 2 >= n) return 0;
  const uint32_t b = at(i + 2);
  if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
  return 0;
}

size_t run_of(const std::vector<Char>& c, size_t j, CharClass cls) {
  while (j < c.size() && c[j].cls == cls) ++j;
  return j;
}

// Whitespace tail shared by both patterns: \s+(?!\S)|\s+ ; Llama-3 first tries \s*[\r\n]+.
size_t match_space(const std::vector<Char>& c, size_t i, bool crlf_rule) {
  const size_t e = run_of(c, i, kSpace);  // c[i] is whitespace, so e > i
  if (crlf_rule) {
    // \s*[\r\n]+: greedy \s* backs off to the last CR/LF of the run; the match ends after it.
    for (size_t q = e; q-- > i;)
      if (is_crlf(c[q])) return q + 1;
  }
  // \s+(?!\S): the whole run at the end of the text, else all but its last character.
  if (e == c.size() || e - i < 2) return e;  // (a single space before \S falls to \s+)
  return e - 1;
}

// End (character index) of the Llama-3 match starting at i; max_digits is 3 (Llama-3) or 1
// (Qwen2).
size_t match_llama3(const std::vector<Char>& c, size_t i, size_t max_digits) {
  const size_t n = c.size();
  const Char& x = c[i];
  if (x.cp == '\'') {
    if (const size_t k = contraction(c, i, /*ignore_case=*/true)) return i + k;
  }
  // [^\r\n\p{L}\p{N}]?\p{L}+
  if (x.cls == kLetter) return run_of(c, i + 1, kLetter);
  if (x.cls != kNumber && !is_crlf(x) && i + 1 < n && c[i + 1].cls == kLetter) return run_of(c, i + 2, kLetter);
  // \p{N}{1,3}
  if (x.cls == kNumber) {
    size_t j = i + 1;
    while (j < n && j - i < max_digits && c[j].cls == kNumber) ++j;
    return j;
  }
  //  ?[^\s\p{L}\p{N}]+[\r\n]*
  size_t j = i;
  if (x.cp == ' ' && i + 1 < n && c[i + 1].cls == kOther) ++j;
  if (c[j].cls == kOther) {
    j = run_of(c, j, kOther);
    while (j < n && is_crlf(c[j])) ++j;
    return j;
  }
  return match_space(c, i, /*crlf_rule=*/true);
}

// End (character index) of the GPT-2 match starting at i.
size_t match_gpt2(const std::vector<Char>& c, size_t i) {
  const size_t n = c.size();
  if (c[i].cp == '\'') {
    if (const size_t k = contraction(c, i, /*ignore_case=*/false)) return i + k;
  }
  //  ?\p{L}+ |  ?\p{N}+ |  ?[^\s\p{L}\p{N}]+
  const size_t j = (c[i].cp == ' ' && i + 1 < n && c[i + 1].cls != kSpace) ? i + 1 : i;
  if (c[j].cls != kSpace) return run_of(c, j + 1, c[j].cls);
  return match_space(c, i, /*crlf_rule=*/false);
}

}  // namespace

std::optional<SplitPattern> recognize_split_regex(std::string_view regex) {
  if (regex == kLlama3Regex) return SplitPattern::kLlama3;
  if (regex == kGpt2Regex) return SplitPattern::kGpt2;
  if (regex == kQwen2Regex) return SplitPattern::kQwen2;
  return std::nullopt;
}

const char* split_pattern_name(SplitPattern p) {
  return p == SplitPattern::kLlama3 ? "Llama-3" : p == SplitPattern::kQwen2 ? "Qwen2" : "GPT-2";
}

void split_ends(SplitPattern pattern, std::string_view text, std::vector<size_t>& ends) {
  thread_local std::vector<Char> chars;  // scratch, per thread: the tokenizer is shared
  chars.clear();
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  for (size_t p = 0; p < text.size();) {
    uint32_t cp;
    p += decode_utf8(s + p, text.size() - p, &cp);
    chars.push_back({cp, static_cast<uint32_t>(p), char_class(cp)});
  }
  for (size_t i = 0; i < chars.size();) {
    switch (pattern) {
      case SplitPattern::kLlama3: i = match_llama3(chars, i, 3); break;
      case SplitPattern::kQwen2: i = match_llama3(chars, i, 1); break;
      case SplitPattern::kGpt2: i = match_gpt2(chars, i); break;
    }
    ends.push_back(chars[i - 1].end);
  }
}

}  // namespace megahost::hf
