// The "decoder" of a tokenizer.json, as a list of steps over token strings (Hugging Face's
// decode_chain), then concatenated. Implemented: ByteLevel, Replace (string pattern),
// ByteFallback, Fuse, Strip, and Sequence of those; null joins tokens with a space, as HF does.
// Where HF would turn bytes that are not valid UTF-8 into U+FFFD (ByteLevel, ByteFallback),
// the bytes are kept: decode is exact, and decode(encode(x)) == x for any bytes x.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace megahost::hf {

class Decoder {
 public:
  // Throws LoadError for a decoder that is not implemented.
  void parse(const nlohmann::json& decoder);
  // Decodes the tokens (consumed) and appends the text to out. [thread-safe]
  void decode(std::vector<std::string>& tokens, std::string& out) const;
  bool is_byte_level() const { return steps_.size() == 1 && steps_[0].kind == Step::kByteLevel; }

 private:
  struct Step {
    enum Kind { kByteLevel, kReplace, kByteFallback, kFuse, kStrip } kind;
    std::string pattern, content;  // Replace; Strip's content
    size_t start = 0, stop = 0;    // Strip
  };
  void add(const nlohmann::json& d);
  std::vector<Step> steps_;
  bool null_ = true;
};

}  // namespace megahost::hf
