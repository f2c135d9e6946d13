// The SentencePiece tokenizer plugins: SpmTokenizer (spm_tokenizer.h) behind the ABI.
// One library, three tokenizers, because Megatron's three names behave differently on the same
// .model file and the host creates a plugin by its id (not by the alias it was asked for):
//   "sentencepiece"         alias SentencePieceTokenizer     (Megatron's added special tokens)
//   "gpt-sentencepiece"     alias GPTSentencePieceTokenizer  (plain sp ids, eod = eos)
//   "llama2-sentencepiece"  alias Llama2Tokenizer            (bos + plain sp ids, eod = eos)
// sdk/tokenizer.h owns the entry points, the buffer protocol and the error trampolines.
#include <dlfcn.h>

#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "megahost/megahost.h"
#include "megahost/sdk/plugin.h"
#include "megahost/sdk/tokenizer.h"
#include "spm_tokenizer.h"

namespace {

using megahost::tokenizers::SpmLoadError;
using megahost::tokenizers::SpmTokenizer;
using megahost::tokenizers::SpmVariant;
namespace sdk = megahost::sdk;

class Spm final : public sdk::TokenizerImpl {
 public:
  explicit Spm(std::unique_ptr<SpmTokenizer> spm) : spm_(std::move(spm)) {}
  int64_t vocab_size() const override { return spm_->vocab_size(); }
  void encode(std::string_view text, std::vector<int32_t>& ids) const override { spm_->encode(text, ids); }
  void decode(const int32_t* ids, size_t n, std::string& text) const override { spm_->decode(ids, n, text); }
  std::optional<int32_t> special_token(std::string_view name) const override {
    return spm_->special_token(name);
  }
  std::string special_token_hint() const override {
    return "Megatron's SentencePieceTokenizer has cls/sep/eod/mask/pad/bos/eos/unk; the GPT and Llama2 variants only "
           "have the model's bos/eos/pad/unk (eod = eos), and pad only when the model defines one";
  }

 private:
  std::unique_ptr<SpmTokenizer> spm_;
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

// index: the descriptor, which is also the SpmVariant.
std::unique_ptr<sdk::TokenizerImpl> create(int index, const mh_host* host, const sdk::Config& cfg) {
  const auto variant = static_cast<SpmVariant>(index);
  const std::string model = cfg.get_string("tokenizer_model");
  const int64_t extra = variant == SpmVariant::Megatron ? cfg.get_int("vocab_extra_ids", 0) : 0;
  if (extra < 0 || extra > 100000)
    throw cfg.error("vocab_extra_ids", "vocab_extra_ids must be in [0, 100000], got " + std::to_string(extra),
                    "Megatron's default is 0 (T5 uses 100)");
  std::unique_ptr<SpmTokenizer> spm;
  try {
    spm = std::make_unique<SpmTokenizer>(shim_path(), model, variant, static_cast<int>(extra));
  } catch (const SpmLoadError& e) {
    // Point at the recipe line of the key as well as at the file itself.
    throw cfg.error("tokenizer_model", e.message(), e.hint());
  }
  sdk::log(host, MH_LOG_DEBUG, "tokenizer.sentencepiece", "loaded ", spm->piece_size(), " pieces from ", model,
           " as ", kDescriptors[index].id, " (vocab size ", spm->vocab_size(), ")");
  return std::make_unique<Spm>(std::move(spm));
}

const void* get_factory(const char* id) {
  return std::strcmp(id, MH_FACTORY_TOKENIZER) == 0 ? &sdk::tokenizer_factory<kDescriptorPtrs, create>() : nullptr;
}

}  // namespace

MH_SDK_PLUGIN_ENTRY(get_factory)
