// The "bert-wordpiece-lower" and "bert-wordpiece-cased" tokenizer plugins (Megatron's
// BertWordPieceLowerCase / BertWordPieceCase): the ABI layer over BertWordPieceTokenizer.
// Every entry point catches all exceptions (MH_SDK_TRY / MH_SDK_CATCH), so none crosses the ABI.
#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "megahost/megahost.h"
#include "megahost/sdk/plugin.h"
#include "wordpiece_tokenizer.h"

namespace {

using megahost::tokenizers::bert::BertWordPieceTokenizer;
using megahost::tokenizers::bert::VocabError;
namespace sdk = megahost::sdk;

struct Instance {
  const mh_host* host;
  std::unique_ptr<BertWordPieceTokenizer> wp;
};

const Instance* as_instance(const mh_tokenizer* t) { return reinterpret_cast<const Instance*>(t); }
const mh_host* host_of(const mh_tokenizer* t) {
  return t != nullptr ? as_instance(t)->host : sdk::library_host();
}

void MH_ABI destroy(mh_tokenizer* t) { delete reinterpret_cast<Instance*>(t); }

int64_t MH_ABI vocab_size(const mh_tokenizer* t) { return as_instance(t)->wp->vocab_size(); }

mh_error* MH_ABI encode(const mh_tokenizer* t, const char* utf8, size_t len, int32_t* ids, size_t cap,
                        size_t* n_ids) {
  const mh_host* host = host_of(t);
  MH_SDK_TRY {
    MH_CHECK(t != nullptr && n_ids != nullptr && (utf8 != nullptr || len == 0) && (ids != nullptr || cap == 0),
             MH_ERR_INVALID_ARG, "bert-wordpiece encode: null argument HINT: pass the instance, the text and n_ids");
    thread_local std::vector<int32_t> scratch;  // per thread: the instance is shared
    scratch.clear();
    as_instance(t)->wp->encode(std::string_view(utf8 == nullptr ? "" : utf8, len), scratch);
    if (!scratch.empty() && cap > 0) std::memcpy(ids, scratch.data(), std::min(cap, scratch.size()) * sizeof(int32_t));
    *n_ids = scratch.size();
    return nullptr;
  }
  MH_SDK_CATCH(host)
}

mh_error* MH_ABI decode(const mh_tokenizer* t, const int32_t* ids, size_t n, char* buf, size_t cap,
                        size_t* n_bytes) {
  const mh_host* host = host_of(t);
  MH_SDK_TRY {
    MH_CHECK(t != nullptr && n_bytes != nullptr && (ids != nullptr || n == 0) && (buf != nullptr || cap == 0),
             MH_ERR_INVALID_ARG, "bert-wordpiece decode: null argument HINT: pass the instance, the ids and n_bytes");
    thread_local std::string scratch;
    scratch.clear();
    as_instance(t)->wp->decode(ids, n, scratch);
    if (!scratch.empty() && cap > 0) std::memcpy(buf, scratch.data(), std::min(cap, scratch.size()));
    *n_bytes = scratch.size();
    return nullptr;
  }
  MH_SDK_CATCH(host)
}

mh_error* MH_ABI special_token(const mh_tokenizer* t, const char* name, int32_t* out_id) {
  const mh_host* host = host_of(t);
  MH_SDK_TRY {
    MH_CHECK(t != nullptr && name != nullptr && out_id != nullptr, MH_ERR_INVALID_ARG,
             "bert-wordpiece special_token: null argument");
    const auto& s = as_instance(t)->wp->special();
    // As Megatron's _BertWordPieceTokenizer: eod is eos, the appended [EOS].
    const std::pair<const char*, int32_t> kNames[] = {
        {MH_TOKEN_PAD, s.pad}, {MH_TOKEN_UNK, s.unk}, {MH_TOKEN_CLS, s.cls}, {MH_TOKEN_SEP, s.sep},
        {MH_TOKEN_MASK, s.mask}, {MH_TOKEN_BOS, s.bos}, {MH_TOKEN_EOS, s.eos}, {MH_TOKEN_EOD, s.eos},
    };
    for (const auto& [n, id] : kNames)
      if (std::strcmp(name, n) == 0) {
        *out_id = id;
        return nullptr;
      }
    throw sdk::Error(MH_ERR_NOT_FOUND, std::string("bert-wordpiece has no special token '") + name +
                                           "' HINT: it has pad, unk, cls, sep, mask, bos, eos and eod (= eos)");
  }
  MH_SDK_CATCH(host)
}

const void* MH_ABI get_extension(const mh_tokenizer*, const char*) { return nullptr; }

const mh_tokenizer_api kApi = {
    MH_TABLE_HEADER(mh_tokenizer_api), destroy, vocab_size, encode, decode, special_token, get_extension,
};

// Both variants take the same keys.
const char* const kSchema =
    R"json({"vocab_file": {"type": "path", "required": true, "doc": "BERT vocab.txt, one token per line (Megatron's --vocab-file)"},)json"
    R"json( "vocab_extra_ids": {"type": "int", "default": 0, "doc": "append <extra_id_0>.. tokens (Megatron's --vocab-extra-ids)"}})json";

const char* const kLowerAliases[] = {"BertWordPieceLowerCase", nullptr};
const char* const kCasedAliases[] = {"BertWordPieceCase", nullptr};

const mh_plugin_descriptor kLower = {
    sizeof(mh_plugin_descriptor),
    "bert-wordpiece-lower",
    "BERT WordPiece, lower-cased",
    "megahost",
    "0.1.0",
    "BERT's uncased WordPiece (Megatron's BertWordPieceLowerCase): lower-case, strip accents, ids equal Megatron's",
    kLowerAliases,
    kSchema,
};
const mh_plugin_descriptor kCased = {
    sizeof(mh_plugin_descriptor),
    "bert-wordpiece-cased",
    "BERT WordPiece, cased",
    "megahost",
    "0.1.0",
    "BERT's cased WordPiece (Megatron's BertWordPieceCase), ids equal Megatron's",
    kCasedAliases,
    kSchema,
};
const mh_plugin_descriptor* const kDescriptors[] = {&kLower, &kCased};
constexpr int kCount = 2;

uint32_t MH_ABI factory_count(void) { return static_cast<uint32_t>(kCount); }
const mh_plugin_descriptor* MH_ABI factory_descriptor(uint32_t i) {
  return i < static_cast<uint32_t>(kCount) ? kDescriptors[i] : nullptr;
}

mh_error* MH_ABI factory_create(const char* id, const mh_host* host, const mh_tokenizer_create_args* args,
                                mh_tokenizer** out, const mh_tokenizer_api** out_api) {
  MH_SDK_TRY {
    MH_CHECK(id != nullptr && args != nullptr && out != nullptr && out_api != nullptr, MH_ERR_INVALID_ARG,
             "bert-wordpiece create: null argument");
    const int which = sdk::find_descriptor(kDescriptors, kCount, id);
    MH_CHECK(which >= 0, MH_ERR_NOT_FOUND, "this library has no tokenizer '", id,
             "' HINT: it provides \"bert-wordpiece-lower\" (alias \"BertWordPieceLowerCase\") and "
             "\"bert-wordpiece-cased\" (alias \"BertWordPieceCase\")");
    const sdk::Config cfg(host, args->config);
    const std::string vocab_file = cfg.get_string("vocab_file");
    const int64_t extra_ids = cfg.get_int("vocab_extra_ids", 0);
    if (extra_ids < 0 || extra_ids > 100000)
      throw cfg.error("vocab_extra_ids", "vocab_extra_ids must be in [0, 100000], got " + std::to_string(extra_ids),
                      "Megatron's --vocab-extra-ids; T5 uses 100");
    auto inst = std::make_unique<Instance>();
    inst->host = host;
    try {
      inst->wp = std::make_unique<BertWordPieceTokenizer>(vocab_file, which == 0, extra_ids);
    } catch (const VocabError& e) {
      throw cfg.error("vocab_file", e.message(), e.hint());  // also names the recipe line
    }
    sdk::log(host, MH_LOG_DEBUG, "tokenizer.bert-wordpiece", "loaded ", inst->wp->vocab_size(), " tokens from ",
             vocab_file, which == 0 ? " (lower-case)" : " (cased)");
    *out = reinterpret_cast<mh_tokenizer*>(inst.release());
    *out_api = &kApi;
    return nullptr;
  }
  MH_SDK_CATCH(host)
}

const mh_tokenizer_factory kFactory = {
    MH_TABLE_HEADER(mh_tokenizer_factory), factory_count, factory_descriptor, factory_create,
};

const void* get_factory(const char* id) {
  return std::strcmp(id, MH_FACTORY_TOKENIZER) == 0 ? &kFactory : nullptr;
}

}  // namespace

MH_SDK_PLUGIN_ENTRY(get_factory)
