// The "hf-tokenizer" plugin (Megatron's HuggingFaceTokenizer): the ABI layer over HfTokenizer.
// Every entry point catches all exceptions (MH_SDK_TRY / MH_SDK_CATCH): none crosses the ABI.
#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "hf_tokenizer.h"
#include "megahost/megahost.h"
#include "megahost/sdk/plugin.h"

namespace {

using megahost::hf::HfTokenizer;
using megahost::hf::LoadError;
namespace sdk = megahost::sdk;

struct Instance {
  const mh_host* host;
  std::unique_ptr<HfTokenizer> tok;
  bool add_special_tokens;
  bool skip_special_tokens;
};

const Instance* as_instance(const mh_tokenizer* t) { return reinterpret_cast<const Instance*>(t); }
const mh_host* host_of(const mh_tokenizer* t) { return t != nullptr ? as_instance(t)->host : sdk::library_host(); }

void MH_ABI destroy(mh_tokenizer* t) { delete reinterpret_cast<Instance*>(t); }

int64_t MH_ABI vocab_size(const mh_tokenizer* t) { return as_instance(t)->tok->vocab_size(); }

mh_error* MH_ABI encode(const mh_tokenizer* t, const char* utf8, size_t len, int32_t* ids, size_t cap,
                        size_t* n_ids) {
  const mh_host* host = host_of(t);
  MH_SDK_TRY {
    MH_CHECK(t != nullptr && n_ids != nullptr && (utf8 != nullptr || len == 0) && (ids != nullptr || cap == 0),
             MH_ERR_INVALID_ARG, "hf-tokenizer encode: null argument HINT: pass the instance, the text and n_ids");
    // Per-thread scratch (the instance is shared); a short buffer means a second call, which
    // the piece cache makes cheap.
    thread_local std::vector<int32_t> scratch;
    scratch.clear();
    const Instance* inst = as_instance(t);
    inst->tok->encode(std::string_view(utf8 == nullptr ? "" : utf8, len), inst->add_special_tokens, scratch);
    if (!scratch.empty() && cap > 0)
      std::memcpy(ids, scratch.data(), std::min(cap, scratch.size()) * sizeof(int32_t));
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
             MH_ERR_INVALID_ARG, "hf-tokenizer decode: null argument HINT: pass the instance, the ids and n_bytes");
    thread_local std::string scratch;
    scratch.clear();
    const Instance* inst = as_instance(t);
    inst->tok->decode(ids, n, inst->skip_special_tokens, scratch);
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
             "hf-tokenizer special_token: null argument");
    const auto id = as_instance(t)->tok->special_token(name);
    MH_CHECK(id.has_value(), MH_ERR_NOT_FOUND, "hf-tokenizer: '", as_instance(t)->tok->file(),
             "' has no special token '", name,
             "' HINT: names come from tokenizer_config.json beside it (bos_token, eos_token, pad_token, unk_token, ...) "
             "or from well-known added tokens; eod is eos");
    *out_id = *id;
    return nullptr;
  }
  MH_SDK_CATCH(host)
}

const void* MH_ABI get_extension(const mh_tokenizer*, const char*) { return nullptr; }

const mh_tokenizer_api kApi = {
    MH_TABLE_HEADER(mh_tokenizer_api), destroy, vocab_size, encode, decode, special_token, get_extension,
};

const char* const kAliases[] = {"HuggingFaceTokenizer", nullptr};

const mh_plugin_descriptor kDescriptor = {
    sizeof(mh_plugin_descriptor),
    "hf-tokenizer",
    "Hugging Face tokenizer.json (BPE)",
    "megahost",
    "0.1.0",
    "Megatron's HuggingFaceTokenizer for BPE tokenizer.json files: Llama-3 / Qwen2 / GPT-2 / GPT-NeoX byte-level BPE and "
    "Llama-2-style BPE with byte fallback; ids equal to Hugging Face tokenizers'",
    kAliases,
    R"json({"tokenizer_model": {"type": "path", "required": true, "doc": "tokenizer.json, or its folder (Megatron's --tokenizer-model)"},)json"
    R"json( "add_special_tokens": {"type": "bool", "default": true, "doc": "add the post-processor's tokens (Llama-2's <s>), as Megatron's tokenize does"},)json"
    R"json( "skip_special_tokens": {"type": "bool", "default": false, "doc": "decode leaves special tokens out (Megatron's detokenize keeps them)"}})json",
};
const mh_plugin_descriptor* const kDescriptors[] = {&kDescriptor};

uint32_t MH_ABI factory_count(void) { return 1; }
const mh_plugin_descriptor* MH_ABI factory_descriptor(uint32_t i) { return i == 0 ? &kDescriptor : nullptr; }

mh_error* MH_ABI factory_create(const char* id, const mh_host* host, const mh_tokenizer_create_args* args,
                                mh_tokenizer** out, const mh_tokenizer_api** out_api) {
  MH_SDK_TRY {
    MH_CHECK(id != nullptr && args != nullptr && out != nullptr && out_api != nullptr, MH_ERR_INVALID_ARG,
             "hf-tokenizer create: null argument");
    MH_CHECK(sdk::find_descriptor(kDescriptors, 1, id) == 0, MH_ERR_NOT_FOUND, "this library has no tokenizer '", id,
             "' HINT: it provides \"hf-tokenizer\" (alias \"HuggingFaceTokenizer\")");
    const sdk::Config cfg(host, args->config);
    const std::string path = cfg.get_string("tokenizer_model");
    auto inst = std::make_unique<Instance>();
    inst->host = host;
    inst->add_special_tokens = cfg.get_bool("add_special_tokens", true);
    inst->skip_special_tokens = cfg.get_bool("skip_special_tokens", false);
    try {
      inst->tok = std::make_unique<HfTokenizer>(path);
    } catch (const LoadError& e) {
      throw cfg.error("tokenizer_model", e.message(), e.hint());  // points at the recipe line too
    }
    sdk::log(host, MH_LOG_DEBUG, "tokenizer.hf-tokenizer", inst->tok->file(), ": ", inst->tok->summary());
    *out = reinterpret_cast<mh_tokenizer*>(inst.release());
    *out_api = &kApi;
    return nullptr;
  }
  MH_SDK_CATCH(host)
}

const mh_tokenizer_factory kFactory = {
    MH_TABLE_HEADER(mh_tokenizer_factory), factory_count, factory_descriptor, factory_create,
};

const void* get_factory(const char* id) { return std::strcmp(id, MH_FACTORY_TOKENIZER) == 0 ? &kFactory : nullptr; }

}  // namespace

MH_SDK_PLUGIN_ENTRY(get_factory)
