// BERT's BasicTokenizer (Megatron's bert_tokenization.py): text -> words.
//
//   1. clean: drop U+0000, U+FFFD and control/format characters; whitespace separates;
//   2. every CJK ideograph becomes a word of its own;
//   3. split on whitespace;
//   4. lower-case variant only: per whitespace token, Python's str.lower() (with Greek final
//      sigma), NFD, and drop nonspacing marks (accents);
//   5. split on punctuation: each punctuation character is a word, the runs between are words.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

namespace megahost::tokenizers::bert {

// The words of one text as code points: word i is cps[ends[i-1] .. ends[i]) (ends[-1] = 0).
struct Words {
  std::vector<uint32_t> cps;
  std::vector<uint32_t> ends;
  void clear() {
    cps.clear();
    ends.clear();
  }
  size_t size() const { return ends.size(); }
  size_t begin_of(size_t i) const { return i == 0 ? 0 : ends[i - 1]; }
};

class BasicTokenizer {
 public:
  explicit BasicTokenizer(bool lower_case) : lower_case_(lower_case) {}

  // Replaces out with the words of utf8. Throws sdk::Error(MH_ERR_INVALID_ARG) naming the byte
  // offset when utf8 is not valid UTF-8. [thread-safe]
  void split(std::string_view utf8, Words& out) const;

  bool lower_case() const { return lower_case_; }

 private:
  bool lower_case_;
};

}  // namespace megahost::tokenizers::bert
