// The "null" tokenizer plugin (Megatron's NullTokenizer): the ABI layer over NullTokenizer.
// Every entry point catches all exceptions (MH_SDK_TRY / MH_SDK_CATCH), so none crosses the ABI.
#include <algorithm>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "megahost/megahost.h"
#include "megahost/sdk/plugin.h"
#include "null_tokenizer.h"

namespace {

using megahost::tokenizers::NullTokenizer;
namespace sdk = megahost::sdk;

struct Instance {
  const mh_host* host;
  NullTokenizer tok;
};

const Instance* as_instance(const mh_tokenizer* t) { return reinterpret_cast<const Instance*>(t); }
const mh_host* host_of(const mh_tokenizer* t) {
  return t != nullptr ? as_instance(t)->host : sdk::library_host();
}

void MH_ABI destroy(mh_tokenizer* t) { delete reinterpret_cast<Instance*>(t); }

int64_t MH_ABI vocab_size(const mh_tokenizer* t) { return as_instance(t)->tok.vocab_size(); }

mh_error* MH_ABI encode(const mh_tokenizer* t, const char* utf8, size_t len, int32_t* ids, size_t cap,
                        size_t* n_ids) {
  const mh_host* host = host_of(t);
  MH_SDK_TRY {
    MH_CHECK(t != nullptr && n_ids != nullptr && (utf8 != nullptr || len == 0) && (ids != nullptr || cap == 0),
             MH_ERR_INVALID_ARG, "null tokenizer encode: null argument HINT: pass the instance, the text and n_ids");
    thread_local std::vector<int32_t> scratch;  // per thread: the instance is shared
    scratch.clear();
    as_instance(t)->tok.encode(std::string_view(utf8 == nullptr ? "" : utf8, len), scratch);
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
             MH_ERR_INVALID_ARG, "null tokenizer decode: null argument HINT: pass the instance, the ids and n_bytes");
    thread_local std::string scratch;
    scratch.clear();
    as_instance(t)->tok.decode(ids, n, scratch);
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
             "null tokenizer special_token: null argument");
    // As Megatron's _NullTokenizer: eod and eos are vocab_size; cls/sep/mask are -1 there, absent here.
    MH_CHECK(std::strcmp(name, MH_TOKEN_EOD) == 0 || std::strcmp(name, MH_TOKEN_EOS) == 0, MH_ERR_NOT_FOUND,
             "the null tokenizer has no special token '", name, "' HINT: it only has eod (= eos)");
    *out_id = as_instance(t)->tok.eod();
    return nullptr;
  }
  MH_SDK_CATCH(host)
}

const void* MH_ABI get_extension(const mh_tokenizer*, const char*) { return nullptr; }

const mh_tokenizer_api kApi = {
    MH_TABLE_HEADER(mh_tokenizer_api), destroy, vocab_size, encode, decode, special_token, get_extension,
};

const char* const kAliases[] = {"NullTokenizer", nullptr};

const mh_plugin_descriptor kDescriptor = {
    sizeof(mh_plugin_descriptor),
    "null",
    "Null tokenizer (text is ids)",
    "megahost",
    "0.1.0",
    "Megatron's NullTokenizer: text is whitespace-separated integer ids; eod = vocab_size, so the vocabulary has "
    "vocab_size + 1 ids",
    kAliases,
    R"json({"vocab_size": {"type": "int", "required": true, "doc": "ids 0..vocab_size-1; eod is vocab_size (Megatron's --vocab-size)"}})json",
};
const mh_plugin_descriptor* const kDescriptors[] = {&kDescriptor};

uint32_t MH_ABI factory_count(void) { return 1; }
const mh_plugin_descriptor* MH_ABI factory_descriptor(uint32_t i) { return i == 0 ? &kDescriptor : nullptr; }

mh_error* MH_ABI factory_create(const char* id, const mh_host* host, const mh_tokenizer_create_args* args,
                                mh_tokenizer** out, const mh_tokenizer_api** out_api) {
  MH_SDK_TRY {
    MH_CHECK(id != nullptr && args != nullptr && out != nullptr && out_api != nullptr, MH_ERR_INVALID_ARG,
             "null tokenizer create: null argument");
    MH_CHECK(sdk::find_descriptor(kDescriptors, 1, id) == 0, MH_ERR_NOT_FOUND, "this library has no tokenizer '",
             id, "' HINT: it provides \"null\" (alias \"NullTokenizer\")");
    const sdk::Config cfg(host, args->config);
    const int64_t v = cfg.get_int("vocab_size");
    // Ids are int32 and eod = vocab_size must be one of them.
    if (v < 1 || v >= std::numeric_limits<int32_t>::max())
      throw cfg.error("vocab_size", "vocab_size must be in [1, 2^31 - 2], got " + std::to_string(v),
                      "the number of ids your pre-tokenized text uses (Megatron's --vocab-size); "
                      "eod gets id vocab_size");
    *out = reinterpret_cast<mh_tokenizer*>(new Instance{host, NullTokenizer(v)});
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
