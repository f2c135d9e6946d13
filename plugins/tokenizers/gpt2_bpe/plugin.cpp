// The "gpt2-bpe" tokenizer plugin: Gpt2BpeTokenizer (bpe_tokenizer.h) behind the ABI, through
// sdk/tokenizer.h (which owns the entry points, the buffer protocol and the error trampolines).
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "bpe_tokenizer.h"
#include "megahost/megahost.h"
#include "megahost/sdk/plugin.h"
#include "megahost/sdk/tokenizer.h"

namespace {

using megahost::tokenizers::BpeLoadError;
using megahost::tokenizers::Gpt2BpeTokenizer;
namespace sdk = megahost::sdk;

// GPT-2 has one special token: <|endoftext|> ends documents and is also bos/eos.
class Gpt2Bpe final : public sdk::TokenizerImpl {
 public:
  explicit Gpt2Bpe(std::unique_ptr<Gpt2BpeTokenizer> bpe) : bpe_(std::move(bpe)) {}
  int64_t vocab_size() const override { return bpe_->vocab_size(); }
  void encode(std::string_view text, std::vector<int32_t>& ids) const override { bpe_->encode(text, ids); }
  void decode(const int32_t* ids, size_t n, std::string& text) const override { bpe_->decode(ids, n, text); }
  std::optional<int32_t> special_token(std::string_view name) const override {
    if (name == MH_TOKEN_EOD || name == MH_TOKEN_EOS || name == MH_TOKEN_BOS) return bpe_->eod_id();
    return std::nullopt;
  }
  std::string special_token_hint() const override {
    return std::string("GPT-2 only has <|endoftext|> (names \"eod\", \"eos\", \"bos\")") +
           (bpe_->eod_id().has_value() ? "" : "; this vocab_file lacks it");
  }

 private:
  std::unique_ptr<Gpt2BpeTokenizer> bpe_;
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

std::unique_ptr<sdk::TokenizerImpl> create(int /*which*/, const mh_host* host, const sdk::Config& cfg) {
  const std::string vocab_file = cfg.get_string("vocab_file");
  const std::string merge_file = cfg.get_string("merge_file");
  std::unique_ptr<Gpt2BpeTokenizer> bpe;
  try {
    bpe = std::make_unique<Gpt2BpeTokenizer>(vocab_file, merge_file);
  } catch (const BpeLoadError& e) {
    // Point at the recipe line of the key as well as at the file itself.
    throw cfg.error(e.key().c_str(), e.message(), e.hint());
  }
  sdk::log(host, MH_LOG_DEBUG, "tokenizer.gpt2-bpe", "loaded ", bpe->vocab_size(), " tokens and ",
           bpe->num_merges(), " merges from ", vocab_file, ", ", merge_file);
  return std::make_unique<Gpt2Bpe>(std::move(bpe));
}

const void* get_factory(const char* id) {
  return std::strcmp(id, MH_FACTORY_TOKENIZER) == 0 ? &sdk::tokenizer_factory<kDescriptors, create>() : nullptr;
}

}  // namespace

MH_SDK_PLUGIN_ENTRY(get_factory)
