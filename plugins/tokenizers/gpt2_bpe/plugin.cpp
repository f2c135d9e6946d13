// The "gpt2-bpe" tokenizer plugin: the ABI layer over Gpt2BpeTokenizer (bpe_tokenizer.h).
// Every entry point catches all exceptions (MH_SDK_TRY / MH_SDK_CATCH), so none crosses the ABI.
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "bpe_tokenizer.h"
#include "megahost/megahost.h"
#include "megahost/sdk/plugin.h"

namespace {

using megahost::tokenizers::BpeLoadError;
using megahost::tokenizers::Gpt2BpeTokenizer;
namespace sdk = megahost::sdk;

struct Instance {
  const mh_host* host;
  std::unique_ptr<Gpt2BpeTokenizer> bpe;
};

const Instance* as_instance(const mh_tokenizer* t) { return reinterpret_cast<const Instance*>(t); }
const mh_host* host_of(const mh_tokenizer* t) {
  return t != nullptr ? as_instance(t)->host : sdk::library_host();
}

void MH_ABI destroy(mh_tokenizer* t) { delete reinterpret_cast<Instance*>(t); }

int64_t MH_ABI vocab_size(const mh_tokenizer* t) { return as_instance(t)->bpe->vocab_size(); }

mh_error* MH_ABI encode(const mh_tokenizer* t, const char* utf8, size_t len, int32_t* ids, size_t cap,
                        size_t* n_ids) {
  const mh_host* host = host_of(t);
  MH_SDK_TRY {
    MH_CHECK(t != nullptr && n_ids != nullptr && (utf8 != nullptr || len == 0) && (ids != nullptr || cap == 0),
             MH_ERR_INVALID_ARG, "gpt2-bpe encode: null argument HINT: pass the instance, the text and n_ids");
    // The two-call protocol encodes twice when the buffer is short; the piece cache makes the
    // second pass cheap. The scratch buffer is per thread: the instance is shared.
    thread_local std::vector<int32_t> scratch;
    scratch.clear();
    as_instance(t)->bpe->encode(std::string_view(utf8 == nullptr ? "" : utf8, len), scratch);
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
             MH_ERR_INVALID_ARG, "gpt2-bpe decode: null argument HINT: pass the instance, the ids and n_bytes");
    thread_local std::string scratch;
    scratch.clear();
    as_instance(t)->bpe->decode(ids, n, scratch);
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
             "gpt2-bpe special_token: null argument");
    const auto eod = as_instance(t)->bpe->eod_id();
    // GPT-2 has one special token: <|endoftext|> ends documents and is also bos/eos.
    const bool is_eod_name = std::strcmp(name, MH_TOKEN_EOD) == 0 || std::strcmp(name, MH_TOKEN_EOS) == 0 ||
                             std::strcmp(name, MH_TOKEN_BOS) == 0;
    MH_CHECK(is_eod_name && eod.has_value(), MH_ERR_NOT_FOUND, "gpt2-bpe has no special token '", name,
             "' HINT: GPT-2 only has <|endoftext|> (names \"eod\", \"eos\", \"bos\")",
             eod.has_value() ? "" : "; this vocab_file lacks it");
    *out_id = *eod;
    return nullptr;
  }
  MH_SDK_CATCH(host)
}

const void* MH_ABI get_extension(const mh_tokenizer*, const char*) { return nullptr; }

const mh_tokenizer_api kApi = {
    MH_TABLE_HEADER(mh_tokenizer_api), destroy, vocab_size, encode, decode, special_token, get_extension,
};

const char* const kAliases[] = {"GPT2BPETokenizer", nullptr};

const mh_plugin_descriptor kDescriptor = {
    sizeof(mh_plugin_descriptor),
    "gpt2-bpe",
    "GPT-2 byte-level BPE",
    "megahost",
    "0.1.0",
    "GPT-2's byte-level BPE tokenizer (Megatron's GPT2BPETokenizer), ids equal to GPT-2's",
    kAliases,
    R"json({"vocab_file": {"type": "path", "required": true, "doc": "GPT-2 encoder.json (Megatron's --vocab-file)"},)json"
    R"json( "merge_file": {"type": "path", "required": true, "doc": "GPT-2 vocab.bpe (Megatron's --merge-file)"}})json",
};
const mh_plugin_descriptor* const kDescriptors[] = {&kDescriptor};

uint32_t MH_ABI factory_count(void) { return 1; }
const mh_plugin_descriptor* MH_ABI factory_descriptor(uint32_t i) { return i == 0 ? &kDescriptor : nullptr; }

mh_error* MH_ABI factory_create(const char* id, const mh_host* host, const mh_tokenizer_create_args* args,
                                mh_tokenizer** out, const mh_tokenizer_api** out_api) {
  MH_SDK_TRY {
    MH_CHECK(id != nullptr && args != nullptr && out != nullptr && out_api != nullptr, MH_ERR_INVALID_ARG,
             "gpt2-bpe create: null argument");
    MH_CHECK(sdk::find_descriptor(kDescriptors, 1, id) == 0, MH_ERR_NOT_FOUND, "this library has no tokenizer '",
             id, "' HINT: it provides \"gpt2-bpe\" (alias \"GPT2BPETokenizer\")");
    const sdk::Config cfg(host, args->config);
    const std::string vocab_file = cfg.get_string("vocab_file");
    const std::string merge_file = cfg.get_string("merge_file");
    auto inst = std::make_unique<Instance>();
    inst->host = host;
    try {
      inst->bpe = std::make_unique<Gpt2BpeTokenizer>(vocab_file, merge_file);
    } catch (const BpeLoadError& e) {
      // Point at the recipe line of the key as well as at the file itself.
      throw cfg.error(e.key().c_str(), e.message(), e.hint());
    }
    sdk::log(host, MH_LOG_DEBUG, "tokenizer.gpt2-bpe", "loaded ", inst->bpe->vocab_size(), " tokens and ",
             inst->bpe->num_merges(), " merges from ", vocab_file, ", ", merge_file);
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
