// The JSON fast path of preprocessing: validate one line, unescape the wanted strings.
#include "megahost/core/preprocess/json_fields.h"

#include <cstdint>
#include <nlohmann/json.hpp>

#include "megahost/core/error.h"

namespace megahost::core::prep {

namespace {

constexpr int kMaxDepth = 256;

// Byte classes inside a JSON string: 0 copies through, others need a look.
enum : uint8_t { kPlain = 0, kQuote, kBackslash, kControl, kNonAscii };
struct ByteClasses {
  uint8_t c[256];
  constexpr ByteClasses() : c{} {
    for (int i = 0; i < 256; ++i) c[i] = i < 0x20 ? kControl : i >= 0x80 ? kNonAscii : kPlain;
    c[static_cast<int>('"')] = kQuote;
    c[static_cast<int>('\\')] = kBackslash;
  }
};
constexpr ByteClasses kClass;

// Length of the well-formed UTF-8 sequence at p (Unicode table 3-7: no overlongs, no
// surrogates, nothing above U+10FFFF), or 0.
size_t utf8_length(const unsigned char* p, const unsigned char* end) {
  const unsigned b0 = p[0];
  auto cont = [&](size_t i, unsigned lo, unsigned hi) { return p + i < end && p[i] >= lo && p[i] <= hi; };
  if (b0 >= 0xC2 && b0 <= 0xDF) return cont(1, 0x80, 0xBF) ? 2 : 0;
  if (b0 == 0xE0) return cont(1, 0xA0, 0xBF) && cont(2, 0x80, 0xBF) ? 3 : 0;
  if ((b0 >= 0xE1 && b0 <= 0xEC) || b0 == 0xEE || b0 == 0xEF) return cont(1, 0x80, 0xBF) && cont(2, 0x80, 0xBF) ? 3 : 0;
  if (b0 == 0xED) return cont(1, 0x80, 0x9F) && cont(2, 0x80, 0xBF) ? 3 : 0;
  if (b0 == 0xF0) return cont(1, 0x90, 0xBF) && cont(2, 0x80, 0xBF) && cont(3, 0x80, 0xBF) ? 4 : 0;
  if (b0 >= 0xF1 && b0 <= 0xF3) return cont(1, 0x80, 0xBF) && cont(2, 0x80, 0xBF) && cont(3, 0x80, 0xBF) ? 4 : 0;
  if (b0 == 0xF4) return cont(1, 0x80, 0x8F) && cont(2, 0x80, 0xBF) && cont(3, 0x80, 0xBF) ? 4 : 0;
  return 0;
}

void append_utf8(std::string& s, uint32_t cp) {
  if (cp < 0x80) {
    s.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    s.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    s.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    s.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    s.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    s.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    s.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    s.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    s.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    s.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

int hex_digit(unsigned char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Strict recursive-descent scanner over one line. Every method returns false for anything it
// does not accept; the caller then asks nlohmann.
struct Scanner {
  const unsigned char* p;
  const unsigned char* const begin;
  const unsigned char* const end;
  std::string& scratch;
  int depth = 0;

  struct Str {
    size_t offset = 0, size = 0;
    bool in_scratch = false;
  };

  void ws() {
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) ++p;
  }

  bool hex4(uint32_t& v) {
    if (end - p < 4) return false;
    v = 0;
    for (int i = 0; i < 4; ++i) {
      const int d = hex_digit(p[i]);
      if (d < 0) return false;
      v = v * 16 + static_cast<uint32_t>(d);
    }
    p += 4;
    return true;
  }

  // At the opening quote. With `out`, the value is recorded (unescaped into scratch when needed).
  bool string(Str* out) {
    ++p;
    const unsigned char* seg = p;
    const size_t start = static_cast<size_t>(p - begin);
    bool escaped = false;
    size_t scratch_start = 0;
    for (;;) {
      while (p < end && kClass.c[*p] == kPlain) ++p;
      if (p >= end) return false;
      switch (kClass.c[*p]) {
        case kQuote: {
          if (out != nullptr) {
            if (escaped) {
              scratch.append(reinterpret_cast<const char*>(seg), static_cast<size_t>(p - seg));
              *out = {scratch_start, scratch.size() - scratch_start, true};
            } else {
              *out = {start, static_cast<size_t>(p - begin) - start, false};
            }
          }
          ++p;
          return true;
        }
        case kControl: return false;  // json.loads (strict) refuses raw control characters
        case kNonAscii: {
          const size_t n = utf8_length(p, end);
          if (n == 0) return false;
          p += n;
          break;
        }
        case kBackslash: {
          if (out != nullptr) {
            if (!escaped) scratch_start = scratch.size();
            escaped = true;
            scratch.append(reinterpret_cast<const char*>(seg), static_cast<size_t>(p - seg));
          }
          ++p;
          if (p >= end) return false;
          const unsigned char e = *p++;
          char c = 0;
          switch (e) {
            case '"': c = '"'; break;
            case '\\': c = '\\'; break;
            case '/': c = '/'; break;
            case 'b': c = '\b'; break;
            case 'f': c = '\f'; break;
            case 'n': c = '\n'; break;
            case 'r': c = '\r'; break;
            case 't': c = '\t'; break;
            case 'u': {
              uint32_t cp = 0;
              if (!hex4(cp)) return false;
              if (cp >= 0xDC00 && cp <= 0xDFFF) return false;  // lone low surrogate
              if (cp >= 0xD800 && cp <= 0xDBFF) {              // needs its low half
                uint32_t lo = 0;
                if (end - p < 2 || p[0] != '\\' || p[1] != 'u') return false;
                p += 2;
                if (!hex4(lo) || lo < 0xDC00 || lo > 0xDFFF) return false;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
              }
              if (out != nullptr) append_utf8(scratch, cp);
              seg = p;
              continue;
            }
            default: return false;  // invalid escape
          }
          if (out != nullptr) scratch.push_back(c);
          seg = p;
          break;
        }
      }
    }
  }

  bool digits() {
    if (p >= end || *p < '0' || *p > '9') return false;
    while (p < end && *p >= '0' && *p <= '9') ++p;
    return true;
  }

  bool number() {
    if (*p == '-') ++p;
    if (p >= end) return false;
    if (*p == '0') {
      ++p;
    } else if (!digits()) {
      return false;
    }
    if (p < end && *p == '.') {
      ++p;
      if (!digits()) return false;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
      ++p;
      if (p < end && (*p == '+' || *p == '-')) ++p;
      if (!digits()) return false;
    }
    return true;
  }

  bool literal(std::string_view word) {
    if (static_cast<size_t>(end - p) < word.size() || std::string_view(reinterpret_cast<const char*>(p), word.size()) != word)
      return false;
    p += word.size();
    return true;
  }

  bool value() {
    if (p >= end) return false;
    switch (*p) {
      case '"': return string(nullptr);
      case '{': return object(nullptr);
      case '[': return array(nullptr);
      case 't': return literal("true");
      case 'f': return literal("false");
      case 'n': return literal("null");
      default: return (*p == '-' || (*p >= '0' && *p <= '9')) && number();
    }
  }

  bool array(std::vector<Str>* strings) {
    if (++depth > kMaxDepth) return false;
    ++p;
    ws();
    if (p < end && *p == ']') {
      ++p;
      --depth;
      return true;
    }
    for (;;) {
      ws();
      if (strings != nullptr) {
        if (p >= end || *p != '"') return false;  // not an array of strings: nlohmann decides
        strings->emplace_back();
        if (!string(&strings->back())) return false;
      } else if (!value()) {
        return false;
      }
      ws();
      if (p >= end) return false;
      if (*p == ',') {
        ++p;
        continue;
      }
      if (*p != ']') return false;
      ++p;
      --depth;
      return true;
    }
  }

  // `on_key(key, has_escape)` returns the index of a wanted field or -1; only for the top level.
  template <typename OnKey, typename OnValue>
  bool top_object(OnKey on_key, OnValue on_value) {
    ws();
    if (p >= end || *p != '{') return false;
    ++depth;
    ++p;
    ws();
    if (p < end && *p == '}') {
      ++p;
    } else {
      for (;;) {
        ws();
        if (p >= end || *p != '"') return false;
        Str key;
        const size_t mark = scratch.size();
        if (!string(&key)) return false;
        const int k = on_key(key);
        scratch.resize(mark);  // keys are not kept
        ws();
        if (p >= end || *p != ':') return false;
        ++p;
        ws();
        if (k >= 0) {
          if (!on_value(k)) return false;
        } else if (!value()) {
          return false;
        }
        ws();
        if (p >= end) return false;
        if (*p == ',') {
          ++p;
          continue;
        }
        if (*p != '}') return false;
        ++p;
        break;
      }
    }
    ws();
    return p == end;
  }

  bool object(void*) {
    if (++depth > kMaxDepth) return false;
    ++p;
    ws();
    if (p < end && *p == '}') {
      ++p;
      --depth;
      return true;
    }
    for (;;) {
      ws();
      if (p >= end || *p != '"' || !string(nullptr)) return false;
      ws();
      if (p >= end || *p != ':') return false;
      ++p;
      ws();
      if (!value()) return false;
      ws();
      if (p >= end) return false;
      if (*p == ',') {
        ++p;
        continue;
      }
      if (*p != '}') return false;
      ++p;
      --depth;
      return true;
    }
  }
};

}  // namespace

bool JsonFields::scan(std::string_view line) {
  const auto* b = reinterpret_cast<const unsigned char*>(line.data());
  Scanner s{b, b, b + line.size(), scratch_};
  std::vector<Scanner::Str> strings;
  auto on_key = [&](const Scanner::Str& key) -> int {
    if (key.in_scratch) return -2;  // an escaped key: let nlohmann match it
    const std::string_view k = line.substr(key.offset, key.size);
    for (size_t i = 0; i < keys_.size(); ++i)
      if (keys_[i] == k) return static_cast<int>(i);
    return -1;
  };
  int escaped_key = 0;
  auto on_key_checked = [&](const Scanner::Str& key) {
    const int k = on_key(key);
    if (k == -2) ++escaped_key;
    return k < 0 ? -1 : k;
  };
  auto on_value = [&](int k) {
    Field& f = fields_[static_cast<size_t>(k)];  // a repeated key: the last one wins, as json.loads
    f.pieces.clear();
    f.found = true;
    if (s.p < s.end && *s.p == '"') {
      Scanner::Str str;
      if (!s.string(&str)) return false;
      f.is_array = false;
      f.pieces.push_back({str.offset, str.size, str.in_scratch});
      return true;
    }
    if (s.p < s.end && *s.p == '[') {
      strings.clear();
      if (!s.array(&strings)) return false;
      f.is_array = true;
      for (const auto& x : strings) f.pieces.push_back({x.offset, x.size, x.in_scratch});
      return true;
    }
    return false;  // another type: nlohmann's path reports it
  };
  if (!s.top_object(on_key_checked, on_value) || escaped_key > 0) return false;
  for (const auto& f : fields_)
    if (!f.found) return false;
  return true;
}

void JsonFields::fallback(std::string_view line) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(line);
  } catch (const nlohmann::json::exception& e) {
    throw Error(cat("not valid JSON: ", e.what(), "\nHINT: the input must be JSON lines, one object per line"));
  }
  for (size_t k = 0; k < keys_.size(); ++k) {
    const std::string& key = keys_[k];
    const auto it = j.is_object() ? j.find(key) : j.end();
    if (it == j.end() || !(it->is_string() || it->is_array()))
      throw Error(cat("no string field '", key, "'\nHINT: pick the field with --json-keys (default: text)"));
    Field& f = fields_[k];
    f.is_array = it->is_array();
    auto add = [&](const nlohmann::json& v) {
      if (!v.is_string())
        throw Error(cat("field '", key, "' must hold a string or an array of strings"));
      const auto& str = v.get_ref<const std::string&>();
      f.pieces.push_back({scratch_.size(), str.size(), true});
      scratch_.append(str);
    };
    if (f.is_array) {
      for (const auto& v : *it) add(v);
    } else {
      add(*it);
    }
  }
}

void JsonFields::parse(std::string_view line) {
  scratch_.clear();
  for (auto& f : fields_) {
    f.pieces.clear();
    f.found = f.is_array = false;
  }
  fast_ = scan(line);
  if (!fast_) {
    scratch_.clear();
    for (auto& f : fields_) {
      f.pieces.clear();
      f.found = f.is_array = false;
    }
    fallback(line);
  }
  for (auto& f : fields_) {
    f.views.clear();
    for (const auto& pc : f.pieces)
      f.views.push_back(pc.in_scratch ? std::string_view(scratch_).substr(pc.offset, pc.size)
                                      : line.substr(pc.offset, pc.size));
  }
}

}  // namespace megahost::core::prep
