#include "added_tokens.h"

#include <algorithm>

#include "unicode_classes.h"

namespace megahost::hf {
namespace {

// Length of the whitespace character ending at text[end) (0 if none); Rust's char::is_whitespace
// is the White_Space property, as kSpace.
size_t space_before(std::string_view text, size_t end) {
  if (end == 0) return 0;
  size_t b = end - 1;  // back to the first byte of the character that ends at `end`
  while (b > 0 && end - b < 4 && (static_cast<unsigned char>(text[b]) & 0xC0) == 0x80) --b;
  uint32_t cp;
  const size_t len = decode_utf8(reinterpret_cast<const unsigned char*>(text.data()) + b, text.size() - b, &cp);
  return (b + len == end && char_class(cp) == kSpace) ? len : 0;
}

size_t space_after(std::string_view text, size_t begin) {
  if (begin >= text.size()) return 0;
  uint32_t cp;
  const size_t len =
      decode_utf8(reinterpret_cast<const unsigned char*>(text.data()) + begin, text.size() - begin, &cp);
  return char_class(cp) == kSpace ? len : 0;
}

}  // namespace

void AddedTokenMatcher::build(const std::vector<AddedToken>& tokens) {
  tokens_ = tokens;
  nodes_.assign(1, Node{});
  std::fill(std::begin(first_byte_), std::end(first_byte_), false);
  for (size_t t = 0; t < tokens_.size(); ++t) {
    const std::string& s = tokens_[t].content;
    if (s.empty()) continue;
    first_byte_[static_cast<unsigned char>(s[0])] = true;
    int32_t node = 0;
    for (unsigned char b : s) {
      int32_t c = child(node, b);
      if (c < 0) {
        c = static_cast<int32_t>(nodes_.size());
        auto& next = nodes_[node].next;
        next.insert(std::upper_bound(next.begin(), next.end(), std::make_pair(b, int32_t{-1})), {b, c});
        nodes_.emplace_back();
      }
      node = c;
    }
    if (nodes_[node].token < 0) nodes_[node].token = static_cast<int32_t>(t);  // the first of duplicates
  }
}

int32_t AddedTokenMatcher::child(int32_t node, uint8_t b) const {
  const auto& next = nodes_[node].next;
  auto it = std::lower_bound(next.begin(), next.end(), std::make_pair(b, int32_t{-1}));
  return (it != next.end() && it->first == b) ? it->second : -1;
}

bool AddedTokenMatcher::find(std::string_view text, size_t from, Match* m) const {
  if (empty()) return false;
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  for (size_t p = from; p < text.size(); ++p) {
    if (!first_byte_[s[p]]) continue;
    int32_t node = 0, best = -1;
    size_t best_end = 0;
    for (size_t q = p; q < text.size(); ++q) {
      node = child(node, s[q]);
      if (node < 0) break;
      if (nodes_[node].token >= 0) best = nodes_[node].token, best_end = q + 1;
    }
    if (best < 0) continue;
    const AddedToken& t = tokens_[best];
    size_t begin = p, end = best_end;
    if (t.lstrip) {
      while (begin > from) {
        const size_t k = space_before(text, begin);
        if (k == 0) break;
        begin -= k;
      }
    }
    if (t.rstrip) {
      while (const size_t k = space_after(text, end)) end += k;
    }
    *m = Match{begin, end, t.id};
    return true;
  }
  return false;
}

}  // namespace megahost::hf
