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
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "megahost/megahost.h"
#include "megahost/sdk/plugin.h"

namespace {

namespace sdk = megahost::sdk;

// Immutable after create, so every call below is thread-safe (preprocess workers share it).
struct Instance {
  const mh_host* host = nullptr;
  std::vector<std::string> words;                  // id -> word
  std::unordered_map<std::string, int32_t> ids;    // word -> id
  int32_t unk_id = -1, eod_id = -1;
  bool lowercase = false;
};

const Instance* as_instance(const mh_tokenizer* t) { return reinterpret_cast<const Instance*>(t); }
const mh_host* host_of(const mh_tokenizer* t) { return t != nullptr ? as_instance(t)->host : sdk::library_host(); }

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

// Words of the text, looked up one by one.
void encode_words(const Instance& inst, std::string_view text, std::vector<int32_t>& out) {
  std::string word;
  size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && is_space(text[i])) ++i;
    const size_t start = i;
    while (i < text.size() && !is_space(text[i])) ++i;
    if (i == start) break;
    word.assign(text.substr(start, i - start));
    if (inst.lowercase)
      for (char& c : word) c = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
    const auto it = inst.ids.find(word);
    out.push_back(it != inst.ids.end() ? it->second : inst.unk_id);
  }
}

void MH_ABI destroy(mh_tokenizer* t) { delete reinterpret_cast<Instance*>(t); }

int64_t MH_ABI vocab_size(const mh_tokenizer* t) { return static_cast<int64_t>(as_instance(t)->words.size()); }

mh_error* MH_ABI encode(const mh_tokenizer* t, const char* utf8, size_t len, int32_t* ids, size_t cap,
                        size_t* n_ids) {
  const mh_host* host = host_of(t);
  MH_SDK_TRY {
    MH_CHECK(t != nullptr && n_ids != nullptr && (utf8 != nullptr || len == 0) && (ids != nullptr || cap == 0),
             MH_ERR_INVALID_ARG, "whitespace encode: null argument HINT: pass the instance, the text and n_ids");
    std::vector<int32_t> out;
    encode_words(*as_instance(t), std::string_view(utf8 == nullptr ? "" : utf8, len), out);
    // Two-call protocol: the total always, the ids only as far as the caller's buffer goes.
    if (cap > 0 && !out.empty()) std::memcpy(ids, out.data(), std::min(cap, out.size()) * sizeof(int32_t));
    *n_ids = out.size();
    return nullptr;
  }
  MH_SDK_CATCH(host)
}

mh_error* MH_ABI decode(const mh_tokenizer* t, const int32_t* ids, size_t n, char* buf, size_t cap,
                        size_t* n_bytes) {
  const mh_host* host = host_of(t);
  MH_SDK_TRY {
    MH_CHECK(t != nullptr && n_bytes != nullptr && (ids != nullptr || n == 0) && (buf != nullptr || cap == 0),
             MH_ERR_INVALID_ARG, "whitespace decode: null argument HINT: pass the instance, the ids and n_bytes");
    const Instance& inst = *as_instance(t);
    std::string text;
    for (size_t i = 0; i < n; ++i) {
      MH_CHECK(ids[i] >= 0 && static_cast<size_t>(ids[i]) < inst.words.size(), MH_ERR_INVALID_ARG,
               "whitespace decode: id ", ids[i], " is outside the vocabulary (", inst.words.size(),
               " words) HINT: decode ids produced by this tokenizer and vocab_file");
      if (ids[i] == inst.eod_id) continue;  // a document boundary, not text
      if (!text.empty()) text.push_back(' ');
      text += inst.words[static_cast<size_t>(ids[i])];
    }
    if (cap > 0 && !text.empty()) std::memcpy(buf, text.data(), std::min(cap, text.size()));
    *n_bytes = text.size();
    return nullptr;
  }
  MH_SDK_CATCH(host)
}

mh_error* MH_ABI special_token(const mh_tokenizer* t, const char* name, int32_t* out_id) {
  const mh_host* host = host_of(t);
  MH_SDK_TRY {
    MH_CHECK(t != nullptr && name != nullptr && out_id != nullptr, MH_ERR_INVALID_ARG,
             "whitespace special_token: null argument");
    const Instance& inst = *as_instance(t);
    if (std::strcmp(name, MH_TOKEN_UNK) == 0) {
      *out_id = inst.unk_id;
    } else if (std::strcmp(name, MH_TOKEN_EOD) == 0 || std::strcmp(name, MH_TOKEN_EOS) == 0) {
      *out_id = inst.eod_id;
    } else {
      throw sdk::Error(MH_ERR_NOT_FOUND, sdk::str_cat("whitespace has no special token '", name,
                                                      "' HINT: it has \"unk\" and \"eod\" (= \"eos\")"));
    }
    return nullptr;
  }
  MH_SDK_CATCH(host)
}

const void* MH_ABI get_extension(const mh_tokenizer*, const char*) { return nullptr; }

const mh_tokenizer_api kApi = {
    MH_TABLE_HEADER(mh_tokenizer_api), destroy, vocab_size, encode, decode, special_token, get_extension,
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
const mh_plugin_descriptor* const kDescriptors[] = {&kDescriptor};

uint32_t MH_ABI factory_count(void) { return 1; }
const mh_plugin_descriptor* MH_ABI factory_descriptor(uint32_t i) { return i == 0 ? &kDescriptor : nullptr; }

// The id of a special token named by recipe key `key`; an error at that key when it is missing.
int32_t special_id(const Instance& inst, const sdk::Config& cfg, const char* key) {
  const std::string word = cfg.get_string(key);
  const auto it = inst.ids.find(word);
  if (it == inst.ids.end())
    throw cfg.error(key, sdk::str_cat("'", word, "' is not in vocab_file"),
                    sdk::str_cat("add a line '", word, "' to the vocabulary or set ", key, " to one of its entries"));
  return it->second;
}

mh_error* MH_ABI factory_create(const char* id, const mh_host* host, const mh_tokenizer_create_args* args,
                                mh_tokenizer** out, const mh_tokenizer_api** out_api) {
  MH_SDK_TRY {
    MH_CHECK(id != nullptr && args != nullptr && out != nullptr && out_api != nullptr, MH_ERR_INVALID_ARG,
             "whitespace create: null argument");
    MH_CHECK(sdk::find_descriptor(kDescriptors, 1, id) == 0, MH_ERR_NOT_FOUND, "this library has no tokenizer '",
             id, "' HINT: it provides \"com.example.whitespace\"");
    const sdk::Config cfg(host, args->config);
    auto inst = std::make_unique<Instance>();
    inst->host = host;
    inst->lowercase = cfg.get_bool("lowercase");
    const std::string path = cfg.get_string("vocab_file");
    std::ifstream in(path);
    if (!in.good())
      throw cfg.error("vocab_file", sdk::str_cat(path, ": cannot open the vocabulary"),
                      "check the path (relative paths are from the current folder)");
    for (std::string line; std::getline(in, line);) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.empty()) continue;
      if (inst->ids.emplace(line, static_cast<int32_t>(inst->words.size())).second) inst->words.push_back(line);
    }
    inst->unk_id = special_id(*inst, cfg, "unk_token");
    inst->eod_id = special_id(*inst, cfg, "eod_token");
    sdk::log(host, MH_LOG_DEBUG, args->instance_name, "loaded ", inst->words.size(), " words from ", path);
    *out = reinterpret_cast<mh_tokenizer*>(inst.release());
    *out_api = &kApi;
    return nullptr;
  }
  MH_SDK_CATCH(host)
}

const mh_tokenizer_factory kFactory = {
    MH_TABLE_HEADER(mh_tokenizer_factory), factory_count, factory_descriptor, factory_create,
};

const void* get_factory(const char* factory_id) {
  return std::strcmp(factory_id, MH_FACTORY_TOKENIZER) == 0 ? &kFactory : nullptr;
}

}  // namespace

// Emits megahost_plugin_v1: the SDK's init/deinit, get_factory and the build fingerprint.
MH_SDK_PLUGIN_ENTRY(get_factory)
