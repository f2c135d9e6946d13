#include "decoder.h"

#include <nlohmann/json.hpp>

#include "bpe_model.h"  // byte_to_unicode / unicode_to_byte
#include "load_error.h"
#include "unicode_classes.h"

namespace megahost::hf {
namespace {

constexpr const char* kDecoderHint =
    "hf-tokenizer implements the decoders ByteLevel, Replace (string pattern), ByteFallback, Fuse, Strip and "
    "Sequence of those (Llama-2/3, GPT-2, GPT-NeoX); use a tokenizer.json of those families";

std::string type_of(const nlohmann::json& j) {
  auto it = j.find("type");
  return (it != j.end() && it->is_string()) ? it->get<std::string>() : std::string("(no type)");
}

std::string string_pattern(const nlohmann::json& d, const char* what) {
  auto p = d.find("pattern");
  if (p != d.end() && p->is_object() && p->contains("String") && p->at("String").is_string())
    return p->at("String").get<std::string>();
  throw LoadError(sdk::str_cat(what, " with a non-string pattern is not implemented: ", d.dump().substr(0, 200)),
                  "only {\"String\": ...} patterns are implemented here");
}

void replace_all(std::string& s, const std::string& from, const std::string& to) {
  if (from.empty()) return;
  std::string out;
  size_t pos = 0;
  for (size_t hit; (hit = s.find(from, pos)) != std::string::npos; pos = hit + from.size())
    out.append(s, pos, hit - pos).append(to);
  if (pos == 0) return;
  out.append(s, pos, std::string::npos);
  s.swap(out);
}

// "<0xAB>" -> 0xAB; -1 otherwise.
int fallback_byte(const std::string& t) {
  auto hex = [](char c) { return c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1; };
  if (t.size() != 6 || t.compare(0, 3, "<0x") != 0 || t[5] != '>') return -1;
  const int hi = hex(t[3]), lo = hex(t[4]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

}  // namespace

void Decoder::parse(const nlohmann::json& decoder) {
  steps_.clear();
  null_ = decoder.is_null();
  if (!null_) add(decoder);
}

void Decoder::add(const nlohmann::json& d) {
  const std::string type = type_of(d);
  if (type == "Sequence") {
    for (const auto& sub : d.value("decoders", nlohmann::json::array())) add(sub);
  } else if (type == "ByteLevel") {
    steps_.push_back({Step::kByteLevel, {}, {}});
  } else if (type == "Replace") {
    steps_.push_back({Step::kReplace, string_pattern(d, "the Replace decoder"), d.value("content", std::string())});
  } else if (type == "ByteFallback") {
    steps_.push_back({Step::kByteFallback, {}, {}});
  } else if (type == "Fuse") {
    steps_.push_back({Step::kFuse, {}, {}});
  } else if (type == "Strip") {
    Step s{Step::kStrip, {}, d.value("content", std::string(" "))};
    s.start = d.value("start", size_t{0});
    s.stop = d.value("stop", size_t{0});
    steps_.push_back(s);
  } else {
    throw LoadError(sdk::str_cat("the decoder '", type, "' is not implemented"), kDecoderHint);
  }
}

void Decoder::decode(std::vector<std::string>& tokens, std::string& out) const {
  if (null_) {  // HF joins the tokens with spaces when there is no decoder
    for (size_t i = 0; i < tokens.size(); ++i) out.append(i == 0 ? "" : " ").append(tokens[i]);
    return;
  }
  for (const Step& step : steps_) {
    switch (step.kind) {
      case Step::kByteLevel:
        for (std::string& t : tokens) {
          // Each character back to its byte; a token with a character outside the byte
          // alphabet (an added token) stays as it is.
          std::string bytes;
          const auto* s = reinterpret_cast<const unsigned char*>(t.data());
          bool ok = true;
          for (size_t p = 0; p < t.size() && ok;) {
            uint32_t cp;
            p += decode_utf8(s + p, t.size() - p, &cp);
            const int b = cp == kInvalidCodePoint ? -1 : unicode_to_byte(cp);
            if (b < 0) ok = false;
            else bytes.push_back(static_cast<char>(b));
          }
          if (ok) t.swap(bytes);
        }
        break;
      case Step::kReplace:
        for (std::string& t : tokens) replace_all(t, step.pattern, step.content);
        break;
      case Step::kByteFallback:
        for (std::string& t : tokens)
          if (const int b = fallback_byte(t); b >= 0) t.assign(1, static_cast<char>(b));
        break;
      case Step::kFuse: {
        std::string all;
        for (const std::string& t : tokens) all += t;
        tokens.assign(1, std::move(all));
        break;
      }
      case Step::kStrip:
        for (std::string& t : tokens) {
          const std::string& c = step.content;
          size_t b = 0, e = t.size();
          for (size_t k = 0; k < step.start && !c.empty() && t.compare(b, c.size(), c) == 0 && b + c.size() <= e; ++k)
            b += c.size();
          for (size_t k = 0; k < step.stop && !c.empty() && e >= b + c.size() && t.compare(e - c.size(), c.size(), c) == 0;
               ++k)
            e -= c.size();
          t = t.substr(b, e - b);
        }
        break;
    }
  }
  for (const std::string& t : tokens) out += t;
}

}  // namespace megahost::hf
