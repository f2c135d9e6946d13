// The "bert-wordpiece-lower" and "bert-wordpiece-cased" tokenizer plugins (Megatron's
// BertWordPieceLowerCase / BertWordPieceCase):
// BertWordPieceTokenizer behind the ABI, through sdk/tokenizer.h (which owns the entry points,
// the buffer protocol and the error trampolines).
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "megahost/megahost.h"
#include "megahost/sdk/plugin.h"
#include "megahost/sdk/tokenizer.h"
#include "wordpiece_tokenizer.h"

namespace {

using megahost::tokenizers::bert::BertWordPieceTokenizer;
using megahost::tokenizers::bert::VocabError;
namespace sdk = megahost::sdk;

class BertWordPiece final : public sdk::TokenizerImpl {
 public:
  explicit BertWordPiece(std::unique_ptr<BertWordPieceTokenizer> wp) : wp_(std::move(wp)) {}
  int64_t vocab_size() const override { return wp_->vocab_size(); }
  void encode(std::string_view text, std::vector<int32_t>& ids) const override { wp_->encode(text, ids); }
  void decode(const int32_t* ids, size_t n, std::string& text) const override { wp_->decode(ids, n, text); }
  std::optional<int32_t> special_token(std::string_view name) const override {
    const auto& s = wp_->special();
    // As Megatron's _BertWordPieceTokenizer: eod is eos, the appended [EOS].
    const std::pair<const char*, int32_t> kNames[] = {
        {MH_TOKEN_PAD, s.pad}, {MH_TOKEN_UNK, s.unk}, {MH_TOKEN_CLS, s.cls}, {MH_TOKEN_SEP, s.sep},
        {MH_TOKEN_MASK, s.mask}, {MH_TOKEN_BOS, s.bos}, {MH_TOKEN_EOS, s.eos}, {MH_TOKEN_EOD, s.eos},
    };
    for (const auto& [n, id] : kNames)
      if (name == n) return id;
    return std::nullopt;
  }
  std::string special_token_hint() const override {
    return "it has pad, unk, cls, sep, mask, bos, eos and eod (= eos)";
  }

 private:
  std::unique_ptr<BertWordPieceTokenizer> wp_;
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

// which: 0 = lower, 1 = cased (kDescriptors order).
std::unique_ptr<sdk::TokenizerImpl> create(int which, const mh_host* host, const sdk::Config& cfg) {
  const std::string vocab_file = cfg.get_string("vocab_file");
  const int64_t extra_ids = cfg.get_int("vocab_extra_ids", 0);
  if (extra_ids < 0 || extra_ids > 100000)
    throw cfg.error("vocab_extra_ids", "vocab_extra_ids must be in [0, 100000], got " + std::to_string(extra_ids),
                    "Megatron's --vocab-extra-ids; T5 uses 100");
  std::unique_ptr<BertWordPieceTokenizer> wp;
  try {
    wp = std::make_unique<BertWordPieceTokenizer>(vocab_file, which == 0, extra_ids);
  } catch (const VocabError& e) {
    throw cfg.error("vocab_file", e.message(), e.hint());  // also names the recipe line
  }
  sdk::log(host, MH_LOG_DEBUG, "tokenizer.bert-wordpiece", "loaded ", wp->vocab_size(), " tokens from ", vocab_file,
           which == 0 ? " (lower-case)" : " (cased)");
  return std::make_unique<BertWordPiece>(std::move(wp));
}

const void* get_factory(const char* id) {
  return std::strcmp(id, MH_FACTORY_TOKENIZER) == 0 ? &sdk::tokenizer_factory<kDescriptors, create>() : nullptr;
}

}  // namespace

MH_SDK_PLUGIN_ENTRY(get_factory)
