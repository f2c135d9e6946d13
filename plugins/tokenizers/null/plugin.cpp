// The "null" tokenizer plugin (Megatron's NullTokenizer): NullTokenizer behind the ABI, through
// sdk/tokenizer.h (which owns the entry points, the buffer protocol and the error trampolines).
#include <cstring>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "megahost/megahost.h"
#include "megahost/sdk/plugin.h"
#include "megahost/sdk/tokenizer.h"
#include "null_tokenizer.h"

namespace {

using megahost::tokenizers::NullTokenizer;
namespace sdk = megahost::sdk;

class Null final : public sdk::TokenizerImpl {
 public:
  explicit Null(int64_t vocab_size) : tok_(vocab_size) {}
  int64_t vocab_size() const override { return tok_.vocab_size(); }
  void encode(std::string_view text, std::vector<int32_t>& ids) const override { tok_.encode(text, ids); }
  void decode(const int32_t* ids, size_t n, std::string& text) const override { tok_.decode(ids, n, text); }
  // As Megatron's _NullTokenizer: eod and eos are vocab_size; cls/sep/mask are -1 there, absent here.
  std::optional<int32_t> special_token(std::string_view name) const override {
    if (name == MH_TOKEN_EOD || name == MH_TOKEN_EOS) return tok_.eod();
    return std::nullopt;
  }
  std::string special_token_hint() const override { return "it only has eod (= eos)"; }

 private:
  NullTokenizer tok_;
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

std::unique_ptr<sdk::TokenizerImpl> create(int /*which*/, const mh_host* /*host*/, const sdk::Config& cfg) {
  const int64_t v = cfg.get_int("vocab_size");
  // Ids are int32 and eod = vocab_size must be one of them.
  if (v < 1 || v >= std::numeric_limits<int32_t>::max())
    throw cfg.error("vocab_size", "vocab_size must be in [1, 2^31 - 2], got " + std::to_string(v),
                    "the number of ids your pre-tokenized text uses (Megatron's --vocab-size); "
                    "eod gets id vocab_size");
  return std::make_unique<Null>(v);
}

const void* get_factory(const char* id) {
  return std::strcmp(id, MH_FACTORY_TOKENIZER) == 0 ? &sdk::tokenizer_factory<kDescriptors, create>() : nullptr;
}

}  // namespace

MH_SDK_PLUGIN_ENTRY(get_factory)
