// The "hf-tokenizer" plugin (Megatron's HuggingFaceTokenizer): HfTokenizer behind the ABI, through
// sdk/tokenizer.h (which owns the entry points, the buffer protocol and the error trampolines).
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "hf_tokenizer.h"
#include "megahost/megahost.h"
#include "megahost/sdk/plugin.h"
#include "megahost/sdk/tokenizer.h"

namespace {

using megahost::hf::HfTokenizer;
using megahost::hf::LoadError;
namespace sdk = megahost::sdk;

class Hf final : public sdk::TokenizerImpl {
 public:
  Hf(std::unique_ptr<HfTokenizer> tok, bool add_special_tokens, bool skip_special_tokens)
      : tok_(std::move(tok)), add_special_tokens_(add_special_tokens), skip_special_tokens_(skip_special_tokens) {}
  int64_t vocab_size() const override { return tok_->vocab_size(); }
  void encode(std::string_view text, std::vector<int32_t>& ids) const override {
    tok_->encode(text, add_special_tokens_, ids);
  }
  void decode(const int32_t* ids, size_t n, std::string& text) const override {
    tok_->decode(ids, n, skip_special_tokens_, text);
  }
  std::optional<int32_t> special_token(std::string_view name) const override {
    return tok_->special_token(name);
  }
  std::string special_token_hint() const override {
    return "names of '" + tok_->file() +
           "' come from tokenizer_config.json beside it (bos_token, eos_token, pad_token, unk_token, ...) "
           "or from well-known added tokens; eod is eos";
  }

 private:
  std::unique_ptr<HfTokenizer> tok_;
  bool add_special_tokens_;
  bool skip_special_tokens_;
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

std::unique_ptr<sdk::TokenizerImpl> create(int /*which*/, const mh_host* host, const sdk::Config& cfg) {
  const std::string path = cfg.get_string("tokenizer_model");
  const bool add_special_tokens = cfg.get_bool("add_special_tokens", true);
  const bool skip_special_tokens = cfg.get_bool("skip_special_tokens", false);
  std::unique_ptr<HfTokenizer> tok;
  try {
    tok = std::make_unique<HfTokenizer>(path);
  } catch (const LoadError& e) {
    throw cfg.error("tokenizer_model", e.message(), e.hint());  // points at the recipe line too
  }
  sdk::log(host, MH_LOG_DEBUG, "tokenizer.hf-tokenizer", tok->file(), ": ", tok->summary());
  return std::make_unique<Hf>(std::move(tok), add_special_tokens, skip_special_tokens);
}

const void* get_factory(const char* id) {
  return std::strcmp(id, MH_FACTORY_TOKENIZER) == 0 ? &sdk::tokenizer_factory<kDescriptors, create>() : nullptr;
}

}  // namespace

MH_SDK_PLUGIN_ENTRY(get_factory)
