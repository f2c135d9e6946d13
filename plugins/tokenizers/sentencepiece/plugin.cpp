// The SentencePiece tokenizer plugins: the ABI layer over SpmTokenizer (spm_tokenizer.h).
// One library, three tokenizers, because Megatron's three names behave differently on the same
// .model file and the host creates a plugin by its id (not by the alias it was asked for):
//   "sentencepiece"         alias SentencePieceTokenizer     (Megatron's added special tokens)
//   "gpt-sentencepiece"     alias GPTSentencePieceTokenizer  (plain sp ids, eod = eos)
//   "llama2-sentencepiece"  alias Llama2Tokenizer            (bos + plain sp ids, eod = eos)
// Every entry point catches all exceptions (MH_SDK_TRY / MH_SDK_CATCH), so none crosses the ABI.
#include <dlfcn.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "megahost/megahost.h"
#include "megahost/sdk/plugin.h"
#include "spm_tokenizer.h"

namespace {

using megahost::tokenizers::SpmLoadError;
using megahost::tokenizers::SpmTokenizer;
using megahost::tokenizers::SpmVariant;
namespace sdk = megahost::sdk;

struct Instance {
  const mh_host* host;
  std::string id;
  std::unique_ptr<SpmTokenizer> spm;
};

const Instance* as_instance(const mh_tokenizer* t) { return reinterpret_cast<const Instance*>(t); }
const mh_host* host_of(const mh_tokenizer* t) {
  return t != nullptr ? as_instance(t)->host : sdk::library_host();
}

void MH_ABI destroy(mh_tokenizer* t) { delete reinterpret_cast<Instance*>(t); }

int64_t MH_ABI vocab_size(const mh_tokenizer* t) { return as_instance(t)->spm->vocab_size(); }

mh_error* MH_ABI encode(const mh_tokenizer* t, const char* utf8, size_t len, int32_t* ids, size_t cap,
                        size_t* n_ids) {
  const mh_host* host = host_of(t);
  MH_SDK_TRY {
    MH_CHECK(t != nullptr && n_ids != nullptr && (utf8 != nullptr || len == 0) && (ids != nullptr || cap == 0),
             MH_ERR_INVALID_ARG, "sentencepiece encode: null argument HINT: pass the instance, the text and n_ids");
    // Per-thread scratch: the instance is shared by preprocessing workers.
    thread_local std::vector<int32_t> scratch;
    scratch.clear();
    as_instance(t)->spm->encode(std::string_view(utf8 == nullptr ? "" : utf8, len), scratch);
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
             MH_ERR_INVALID_ARG, "sentencepiece decode: null argument HINT: pass the instance, the ids and n_bytes");
    thread_local std::string scratch;
    scratch.clear();
    as_instance(t)->spm->decode(ids, n, scratch);
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
             "sentencepiece special_token: null argument");
    const auto id = as_instance(t)->spm->special_token(name);
    MH_CHECK(id.has_value(), MH_ERR_NOT_FOUND, as_instance(t)->id, " has no special token '", name,
             "' HINT: Megatron's SentencePieceTokenizer has cls/sep/eod/mask/pad/bos/eos/unk; the GPT and Llama2 "
             "variants only have the model's bos/eos/pad/unk (eod = eos), and pad only when the model defines one");
    *out_id = *id;
    return nullptr;
  }
  MH_SDK_CATCH(host)
}

const void* MH_ABI get_extension(const mh_tokenizer*, const char*) { return nullptr; }

const mh_tokenizer_api kApi = {
    MH_TABLE_HEADER(mh_tokenizer_api), destroy, vocab_size, encode, decode, special_token, get_extension,
};

#define MH_SPM_MODEL_KEY \
  R"json("tokenizer_model": {"type": "path", "required": true, "doc": "SentencePiece .model file (Megatron's --tokenizer-model)"})json"

const char* const kMegatronAliases[] = {"SentencePieceTokenizer", nullptr};
const char* const kGptAliases[] = {"GPTSentencePieceTokenizer", nullptr};
const char* const kLlama2Aliases[] = {"Llama2Tokenizer", nullptr};

// Same order as SpmVariant.
const mh_plugin_descriptor kDescriptors[] = {
    {sizeof(mh_plugin_descriptor), "sentencepiece", "SentencePiece (Megatron's SentencePieceTokenizer)", "megahost",
     "0.1.0",
     "SentencePiece ids plus Megatron's added <CLS> <SEP> <EOD> <MASK> (and <PAD>/<BOS>/<EOS> when the model "
     "lacks them), special-token text split out; eod = <EOD>",
     kMegatronAliases,
     "{" MH_SPM_MODEL_KEY R"json(, "vocab_extra_ids": {"type": "int", "default": 0, "doc": "number of <extra_id_N> tokens to add (Megatron's --vocab-extra-ids)"}})json"},
    {sizeof(mh_plugin_descriptor), "gpt-sentencepiece", "SentencePiece (Megatron's GPTSentencePieceTokenizer)",
     "megahost", "0.1.0", "SentencePiece ids as sp.encode_as_ids, no bos/eos added; eod = the model's eos", kGptAliases,
     "{" MH_SPM_MODEL_KEY "}"},
    {sizeof(mh_plugin_descriptor), "llama2-sentencepiece", "SentencePiece (Megatron's Llama2Tokenizer)", "megahost",
     "0.1.0", "bos followed by SentencePiece ids (Megatron's Llama2Tokenizer.tokenize); eod = the model's eos",
     kLlama2Aliases, "{" MH_SPM_MODEL_KEY "}"},
};
const mh_plugin_descriptor* const kDescriptorPtrs[] = {&kDescriptors[0], &kDescriptors[1], &kDescriptors[2]};
constexpr int kCount = 3;

// The bridge library sits in the "sentencepiece" folder beside this plugin (CMakeLists.txt).
std::string shim_path() {
  Dl_info info{};
  MH_CHECK(dladdr(reinterpret_cast<void*>(&shim_path), &info) != 0 && info.dli_fname != nullptr, MH_ERR_INTERNAL,
           "sentencepiece plugin: cannot find its own library path");
  std::string dir = info.dli_fname;
  const size_t slash = dir.rfind('/');
  dir = slash == std::string::npos ? "." : dir.substr(0, slash);
  return dir + "/sentencepiece/libmegahost_spm_shim.so";
}

uint32_t MH_ABI factory_count(void) { return kCount; }
const mh_plugin_descriptor* MH_ABI factory_descriptor(uint32_t i) { return i < kCount ? kDescriptorPtrs[i] : nullptr; }

mh_error* MH_ABI factory_create(const char* id, const mh_host* host, const mh_tokenizer_create_args* args,
                                mh_tokenizer** out, const mh_tokenizer_api** out_api) {
  MH_SDK_TRY {
    MH_CHECK(id != nullptr && args != nullptr && out != nullptr && out_api != nullptr, MH_ERR_INVALID_ARG,
             "sentencepiece create: null argument");
    const int index = sdk::find_descriptor(kDescriptorPtrs, kCount, id);
    MH_CHECK(index >= 0, MH_ERR_NOT_FOUND, "this library has no tokenizer '", id,
             "' HINT: it provides \"sentencepiece\" (SentencePieceTokenizer), \"gpt-sentencepiece\" "
             "(GPTSentencePieceTokenizer) and \"llama2-sentencepiece\" (Llama2Tokenizer)");
    const auto variant = static_cast<SpmVariant>(index);
    const sdk::Config cfg(host, args->config);
    const std::string model = cfg.get_string("tokenizer_model");
    const int64_t extra = variant == SpmVariant::Megatron ? cfg.get_int("vocab_extra_ids", 0) : 0;
    if (extra < 0 || extra > 100000)
      throw cfg.error("vocab_extra_ids", "vocab_extra_ids must be in [0, 100000], got " + std::to_string(extra),
                      "Megatron's default is 0 (T5 uses 100)");
    auto inst = std::make_unique<Instance>();
    inst->host = host;
    inst->id = kDescriptors[index].id;
    try {
      inst->spm = std::make_unique<SpmTokenizer>(shim_path(), model, variant, static_cast<int>(extra));
    } catch (const SpmLoadError& e) {
      // Point at the recipe line of the key as well as at the file itself.
      throw cfg.error("tokenizer_model", e.message(), e.hint());
    }
    sdk::log(host, MH_LOG_DEBUG, "tokenizer.sentencepiece", "loaded ", inst->spm->piece_size(), " pieces from ",
             model, " as ", inst->id, " (vocab size ", inst->spm->vocab_size(), ")");
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
