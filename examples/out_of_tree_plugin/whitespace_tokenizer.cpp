// "com.example.whitespace": a word-level tokenizer written as a third party would write it,
// against the installed megahost SDK only (find_package(megahost), megahost_add_plugin).
//
// Text is split on ASCII whitespace; each word is looked up in a vocabulary file (one token per
// line, id = line number, 0-based) and unknown words become the unk token. decode joins words
// with single spaces, so whitespace is not preserved: this is a teaching example, not a
// tokenizer for real training.
#include <cstring>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "megahost/megahost.h"
#include "megahost/sdk/plugin.h"
#include "megahost/sdk/tokenizer.h"

namespace {

namespace sdk = megahost::sdk;

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

// The tokenizer itself. sdk/tokenizer.h turns it into the C ABI: the entry points with
// MH_SDK_TRY / MH_SDK_CATCH (so our exceptions become mh_error*), null-argument checks and the
// two-call buffer protocol of encode / decode.
// Immutable after create, so every method is thread-safe (preprocess workers share it).
class WhitespaceTokenizer final : public sdk::TokenizerImpl {
 public:
  std::vector<std::string> words;                // id -> word
  std::unordered_map<std::string, int32_t> ids;  // word -> id
  int32_t unk_id = -1, eod_id = -1;
  bool lowercase = false;

  int64_t vocab_size() const override { return static_cast<int64_t>(words.size()); }

  // Words of the text, looked up one by one.
  void encode(std::string_view text, std::vector<int32_t>& out) const override {
    std::string word;
    size_t i = 0;
    while (i < text.size()) {
      while (i < text.size() && is_space(text[i])) ++i;
      const size_t start = i;
      while (i < text.size() && !is_space(text[i])) ++i;
      if (i == start) break;
      word.assign(text.substr(start, i - start));
      if (lowercase)
        for (char& c : word) c = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
      const auto it = ids.find(word);
      out.push_back(it != ids.end() ? it->second : unk_id);
    }
  }

  void decode(const int32_t* in, size_t n, std::string& text) const override {
    for (size_t i = 0; i < n; ++i) {
      MH_CHECK(in[i] >= 0 && static_cast<size_t>(in[i]) < words.size(), MH_ERR_INVALID_ARG,
               "whitespace decode: id ", in[i], " is outside the vocabulary (", words.size(),
               " words) HINT: decode ids produced by this tokenizer and vocab_file");
      if (in[i] == eod_id) continue;  // a document boundary, not text
      if (!text.empty()) text.push_back(' ');
      text += words[static_cast<size_t>(in[i])];
    }
  }

  // Unknown names become MH_ERR_NOT_FOUND with special_token_hint() as the HINT.
  std::optional<int32_t> special_token(std::string_view name) const override {
    if (name == MH_TOKEN_UNK) return unk_id;
    if (name == MH_TOKEN_EOD || name == MH_TOKEN_EOS) return eod_id;
    return std::nullopt;
  }
  std::string special_token_hint() const override { return "it has \"unk\" and \"eod\" (= \"eos\")"; }
};

const char* const kAliases[] = {"WhitespaceTokenizer", nullptr};

// The host checks these keys (spelling, types, required) and fills defaults before create.
const mh_plugin_descriptor kDescriptor = {
    sizeof(mh_plugin_descriptor),
    "com.example.whitespace",
    "Whitespace word tokenizer (example)",
    "example.com",
    "0.1.0",
    "splits on ASCII whitespace and looks words up in a one-word-per-line vocabulary",
    kAliases,
    R"json({"vocab_file": {"type": "path", "required": true, "doc": "one token per line; id = line number"},
 "lowercase": {"type": "bool", "default": false, "doc": "lowercase ASCII letters before the lookup"},
 "unk_token": {"type": "string", "default": "<unk>", "doc": "vocabulary entry for unknown words"},
 "eod_token": {"type": "string", "default": "<eod>", "doc": "vocabulary entry that ends documents"}})json",
};
// Every tokenizer this library provides (one here); create() gets the index of the one asked for.
const mh_plugin_descriptor* const kDescriptors[] = {&kDescriptor};

// The id of a special token named by recipe key `key`; an error at that key when it is missing.
int32_t special_id(const WhitespaceTokenizer& tok, const sdk::Config& cfg, const char* key) {
  const std::string word = cfg.get_string(key);
  const auto it = tok.ids.find(word);
  if (it == tok.ids.end())
    throw cfg.error(key, sdk::str_cat("'", word, "' is not in vocab_file"),
                    sdk::str_cat("add a line '", word, "' to the vocabulary or set ", key, " to one of its entries"));
  return it->second;
}

// Called by the SDK's factory once the id is matched; throwing here makes create fail cleanly.
std::unique_ptr<sdk::TokenizerImpl> create(int /*which*/, const mh_host* host, const sdk::Config& cfg) {
  auto tok = std::make_unique<WhitespaceTokenizer>();
  tok->lowercase = cfg.get_bool("lowercase");
  const std::string path = cfg.get_string("vocab_file");
  std::ifstream in(path);
  if (!in.good())
    throw cfg.error("vocab_file", sdk::str_cat(path, ": cannot open the vocabulary"),
                    "check the path (relative paths are from the current folder)");
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    if (tok->ids.emplace(line, static_cast<int32_t>(tok->words.size())).second) tok->words.push_back(line);
  }
  tok->unk_id = special_id(*tok, cfg, "unk_token");
  tok->eod_id = special_id(*tok, cfg, "eod_token");
  sdk::log(host, MH_LOG_DEBUG, "tokenizer.whitespace", "loaded ", tok->words.size(), " words from ", path);
  return tok;
}

const void* get_factory(const char* factory_id) {
  // tokenizer_factory: count / descriptor / create over kDescriptors (ids and aliases).
  return std::strcmp(factory_id, MH_FACTORY_TOKENIZER) == 0 ? &sdk::tokenizer_factory<kDescriptors, create>()
                                                            : nullptr;
}

}  // namespace

// Emits megahost_plugin_v1: the SDK's init/deinit, get_factory and the build fingerprint.
MH_SDK_PLUGIN_ENTRY(get_factory)
