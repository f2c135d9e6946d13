// Rule-based sentence splitting (see the header for the rules).
#include "megahost/core/preprocess/sentences.h"

#include <algorithm>
#include <iterator>

namespace megahost::core::prep {

namespace {

constexpr size_t kPieceCodePoints = 1000000;  // Megatron's max_len

// Words (without their final '.') after which a '.' does not end a sentence.
constexpr std::string_view kAbbreviations[] = {
    "Mr", "Mrs", "Ms", "Dr", "Prof", "Sr", "Jr", "St", "Mt", "Rev", "Gen", "Col", "Capt", "Lt", "Sgt",
    "Gov", "Sen", "Rep", "Pres", "vs", "etc", "e.g", "i.e", "cf", "al", "U.S", "U.K", "U.N", "a.m",
    "p.m", "Inc", "Ltd", "Co", "Corp", "No", "Nos", "Vol", "Fig", "Jan", "Feb", "Aug", "Sept", "Oct"};

bool is_space(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }
bool starts_with(std::string_view s, size_t i, std::string_view w) { return s.substr(i, w.size()) == w; }

// Closing quote or bracket at i: its length in bytes, or 0.
size_t closer(std::string_view s, size_t i) {
  const char c = s[i];
  if (c == '"' || c == '\'' || c == ')' || c == ']') return 1;
  if (starts_with(s, i, "\xE2\x80\x9D") || starts_with(s, i, "\xE2\x80\x99")) return 3;  // ” ’
  return 0;
}

// Can a sentence start at i?
bool sentence_start(std::string_view s, size_t i) {
  const char c = s[i];
  if ((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  if (c == '"' || c == '\'' || c == '(' || c == '[') return true;
  return starts_with(s, i, "\xE2\x80\x9C") || starts_with(s, i, "\xE2\x80\x98");  // “ ‘
}

// Is the '.' at `dot` the end of an abbreviation or an initial?
bool abbreviation_before(std::string_view s, size_t dot) {
  size_t b = dot;
  while (b > 0 && !is_space(static_cast<unsigned char>(s[b - 1]))) --b;
  while (b < dot && (s[b] == '(' || s[b] == '"' || s[b] == '\'' || s[b] == '[')) ++b;
  const std::string_view word = s.substr(b, dot - b);
  if (word.size() == 1 && ((word[0] >= 'A' && word[0] <= 'Z') || (word[0] >= 'a' && word[0] <= 'z'))) return true;
  return std::find(std::begin(kAbbreviations), std::end(kAbbreviations), word) != std::end(kAbbreviations);
}

void split_piece(std::string_view s, bool keep_newlines, std::vector<std::string_view>& out) {
  const size_t n = s.size();
  size_t start = 0;
  for (size_t i = 0; i < n; ++i) {
    const char c = s[i];
    if (c != '.' && c != '!' && c != '?') continue;
    size_t j = i + 1;
    while (j < n && (s[j] == '.' || s[j] == '!' || s[j] == '?')) ++j;
    const bool single_dot = c == '.' && j == i + 1;
    for (size_t k; j < n && (k = closer(s, j)) > 0;) j += k;
    if (j >= n || !is_space(static_cast<unsigned char>(s[j]))) {
      i = j - 1;
      continue;
    }
    size_t next = j;
    while (next < n && is_space(static_cast<unsigned char>(s[next]))) ++next;
    if (next >= n || !sentence_start(s, next) || (single_dot && abbreviation_before(s, i))) {
      i = j - 1;
      continue;
    }
    out.push_back(s.substr(start, (keep_newlines ? next : j) - start));
    start = next;
    i = next - 1;
  }
  size_t last = n;
  while (last > start && is_space(static_cast<unsigned char>(s[last - 1]))) --last;
  out.push_back(s.substr(start, last - start));
}

}  // namespace

void split_sentences(std::string_view text, bool keep_newlines, std::vector<std::string_view>& out) {
  // Cut after every kPieceCodePoints code points (UTF-8 lead bytes), as Megatron's text[i:i+max_len].
  if (text.size() <= kPieceCodePoints) {  // fewer bytes than the limit: one piece
    if (!text.empty()) split_piece(text, keep_newlines, out);
    return;
  }
  size_t begin = 0, count = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    if ((static_cast<unsigned char>(text[i]) & 0xC0) == 0x80) continue;
    if (count == kPieceCodePoints) {
      split_piece(text.substr(begin, i - begin), keep_newlines, out);
      begin = i;
      count = 0;
    }
    ++count;
  }
  if (begin < text.size()) split_piece(text.substr(begin), keep_newlines, out);
}

}  // namespace megahost::core::prep
