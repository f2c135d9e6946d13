#include "basic_tokenizer.h"

#include <algorithm>

#include "megahost/sdk/error.h"
#include "unicode_tables.h"

namespace megahost::tokenizers::bert {
namespace {

constexpr uint32_t kCapitalSigma = 0x3A3, kSmallSigma = 0x3C3, kFinalSigma = 0x3C2;

// CPython's Final_Sigma rule for token[i] == capital sigma: a cased letter before it (skipping
// case-ignorable characters) and none after it (same skipping).
bool is_final_sigma(const std::vector<uint32_t>& token, size_t i) {
  size_t j = i;
  uint8_t f = 0;
  while (j > 0 && ((f = char_flags(token[j - 1])) & kCaseIgnorable)) --j;
  if (j == 0 || !(f & kCased)) return false;
  for (size_t k = i + 1; k < token.size(); ++k) {
    f = char_flags(token[k]);
    if (!(f & kCaseIgnorable)) return !(f & kCased);
  }
  return true;
}

// NFD's canonical ordering: every run of non-starters sorted (stably) by combining class.
void reorder_marks(std::vector<uint32_t>& s) {
  for (size_t i = 0; i < s.size();) {
    if (combining_class(s[i]) == 0) {
      ++i;
      continue;
    }
    size_t j = i + 1;
    while (j < s.size() && combining_class(s[j]) != 0) ++j;
    if (j - i > 1)
      std::stable_sort(s.begin() + static_cast<std::ptrdiff_t>(i), s.begin() + static_cast<std::ptrdiff_t>(j),
                       [](uint32_t a, uint32_t b) { return combining_class(a) < combining_class(b); });
    i = j;
  }
}

// token.lower(), then NFD, then drop category Mn (_run_strip_accents).
void lower_strip_accents(const std::vector<uint32_t>& token, std::vector<uint32_t>& lowered,
                         std::vector<uint32_t>& out) {
  out.clear();
  const bool ascii = std::all_of(token.begin(), token.end(), [](uint32_t c) { return c < 0x80; });
  if (ascii) {
    for (uint32_t c : token) out.push_back(c >= 'A' && c <= 'Z' ? c + 32 : c);
    return;
  }
  lowered.clear();
  for (size_t i = 0; i < token.size(); ++i) {
    if (token[i] == kCapitalSigma) lowered.push_back(is_final_sigma(token, i) ? kFinalSigma : kSmallSigma);
    else append_lower(token[i], lowered);
  }
  std::vector<uint32_t>& nfd = out;
  for (uint32_t c : lowered) append_decomposition(c, nfd);
  reorder_marks(nfd);
  nfd.erase(std::remove_if(nfd.begin(), nfd.end(), [](uint32_t c) { return (char_flags(c) & kMark) != 0; }),
            nfd.end());
}

// _run_split_on_punc: appends the words of one token to out.
void split_on_punctuation(const std::vector<uint32_t>& chars, Words& out) {
  bool in_word = false;
  for (uint32_t c : chars) {
    const bool punct = c < 0x80 ? ((c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) ||
                                   (c >= 123 && c <= 126))
                                : (char_flags(c) & kPunct) != 0;
    if (punct && in_word) out.ends.push_back(static_cast<uint32_t>(out.cps.size()));
    out.cps.push_back(c);
    if (punct) out.ends.push_back(static_cast<uint32_t>(out.cps.size()));
    in_word = !punct;
  }
  if (in_word) out.ends.push_back(static_cast<uint32_t>(out.cps.size()));
}

}  // namespace

void BasicTokenizer::split(std::string_view utf8, Words& out) const {
  out.clear();
  // Per-thread scratch: the instance is shared by preprocessing workers.
  thread_local std::vector<uint32_t> token, lowered, stripped;
  token.clear();
  auto flush = [&] {
    if (token.empty()) return;
    if (lower_case_) {
      lower_strip_accents(token, lowered, stripped);
      split_on_punctuation(stripped, out);
    } else {
      split_on_punctuation(token, out);
    }
    token.clear();
  };
  const auto* s = reinterpret_cast<const unsigned char*>(utf8.data());
  const size_t n = utf8.size();
  for (size_t i = 0; i < n;) {
    uint32_t cp;
    const size_t len = decode_utf8(s + i, n - i, &cp);
    MH_CHECK(len != 0, MH_ERR_INVALID_ARG, "bert-wordpiece: the text is not valid UTF-8 (byte ", i,
             ") HINT: decode or clean the input as UTF-8 first");
    i += len;
    const uint8_t f = char_flags(cp);
    if (f & kDrop) continue;
    if (f & kSpace) {
      flush();
    } else if (is_cjk(cp)) {
      flush();
      token.push_back(cp);
      flush();
    } else {
      token.push_back(cp);
    }
  }
  flush();
}

}  // namespace megahost::tokenizers::bert
