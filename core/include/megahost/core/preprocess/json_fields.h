// megahost core — the text fields of one JSON line, as Python's json.loads(line)[key] gives them.
//
// A hand-written scanner validates the whole line (strict JSON: RFC 8259 grammar, strict UTF-8,
// no control characters in strings) and unescapes only the wanted string values, without
// building a document. Anything it does not handle — a wanted field that is missing or not a
// string / array of strings, a lone \u surrogate, any syntax error, nesting deeper than 256 —
// goes to nlohmann::json, which then either gives the same values or the error message.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace megahost::core::prep {

class JsonFields {
 public:
  explicit JsonFields(std::vector<std::string> keys) : keys_(std::move(keys)), fields_(keys_.size()) {}

  // Parses one line (without its newline). Throws std::exception (nlohmann's message) for
  // invalid JSON, core::Error when a key is missing or holds something else than text.
  void parse(std::string_view line);
  // The strings of key k after parse(): one for a string value, one per element for an array
  // of strings (Megatron's pre-split sentences). Valid until the next parse().
  const std::vector<std::string_view>& values(size_t k) const { return fields_[k].views; }
  bool is_array(size_t k) const { return fields_[k].is_array; }
  // How the last line was parsed (for tests): true when the fast scanner did it.
  bool fast_path() const { return fast_; }

 private:
  struct Field {
    struct Piece {
      size_t offset, size;
      bool in_scratch;  // else in the line
    };
    std::vector<Piece> pieces;
    std::vector<std::string_view> views;
    bool found = false, is_array = false;
  };
  bool scan(std::string_view line);      // the fast scanner; false: use the fallback
  void fallback(std::string_view line);  // nlohmann

  std::vector<std::string> keys_;
  std::vector<Field> fields_;
  std::string scratch_;  // unescaped strings
  bool fast_ = false;
};

}  // namespace megahost::core::prep
