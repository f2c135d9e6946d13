// Added tokens (tokenizer.json "added_tokens"): found in the raw text before anything else, as
// Hugging Face's AddedVocabulary does: the leftmost match, the longest one at that position;
// lstrip / rstrip let a token swallow the whitespace before / after it.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace megahost::hf {

struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool special = false, lstrip = false, rstrip = false;
  bool normalized = false;  // matched in the normalized text instead of the raw text
};

class AddedTokenMatcher {
 public:
  void build(const std::vector<AddedToken>& tokens);
  bool empty() const { return nodes_.size() <= 1; }

  struct Match {
    size_t begin, end;  // bytes of the text covered, whitespace swallowed by lstrip/rstrip included
    int32_t id;
  };
  // Calls on_text(segment) for the text between matches and on_token(id) for each match, in
  // order. Empty segments are skipped. [thread-safe]
  template <typename OnText, typename OnToken>
  void split(std::string_view text, OnText&& on_text, OnToken&& on_token) const {
    size_t done = 0;
    for (size_t from = 0;;) {
      Match m;
      if (!find(text, from, &m)) break;
      if (m.begin > done) on_text(text.substr(done, m.begin - done));
      on_token(m.id);
      done = from = m.end;
    }
    if (done < text.size()) on_text(text.substr(done));
  }

 private:
  bool find(std::string_view text, size_t from, Match* m) const;
  // Byte trie; node 0 is the root. Children are (byte, node) pairs sorted by byte.
  struct Node {
    std::vector<std::pair<uint8_t, int32_t>> next;
    int32_t token = -1;  // index into tokens_ when a token ends here
  };
  int32_t child(int32_t node, uint8_t b) const;
  std::vector<Node> nodes_{1};
  std::vector<AddedToken> tokens_;
  bool first_byte_[256] = {};
};

}  // namespace megahost::hf
