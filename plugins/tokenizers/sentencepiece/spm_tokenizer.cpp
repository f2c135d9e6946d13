#include "spm_tokenizer.h"

#include <dlfcn.h>

#include <fstream>
#include <mutex>
#include <unordered_map>

namespace megahost::tokenizers {

namespace {

// Length of the valid UTF-8 prefix of s (== s.size() when all of it is valid). Rejects overlong
// forms, surrogates and code points above U+10FFFF, as Python's UTF-8 codec does.
size_t valid_utf8_prefix(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    const unsigned c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len = 0;
    unsigned lo = 0x80, hi = 0xBF;  // allowed range of the second byte
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      if (c == 0xE0) lo = 0xA0;  // overlong
      if (c == 0xED) hi = 0x9F;  // surrogates
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      if (c == 0xF0) lo = 0x90;  // overlong
      if (c == 0xF4) hi = 0x8F;  // above U+10FFFF
    } else {
      return i;
    }
    if (i + len > n || p[i + 1] < lo || p[i + 1] > hi) return i;
    for (size_t k = 2; k < len; ++k)
      if ((p[i + k] & 0xC0) != 0x80) return i;
    i += len;
  }
  return n;
}

// The bridge's table; the library stays loaded for the life of the process (like plugins).
const mh_spm_shim_api* load_shim(const std::string& path) {
  static std::mutex mu;
  const std::lock_guard<std::mutex> lock(mu);
  // RTLD_DEEPBIND: sentencepiece must bind to its own bundled protobuf (spm_shim.h says why).
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
  if (handle == nullptr) {
    const char* why = dlerror();
    throw sdk::Error(MH_ERR_UNSUPPORTED, "cannot load the SentencePiece bridge " + path + ": " +
                                             (why != nullptr ? why : "?") +
                                             " HINT: install libsentencepiece0 (Debian) and reinstall megahost's "
                                             "sentencepiece plugin folder");
  }
  auto entry = reinterpret_cast<mh_spm_shim_entry_fn>(dlsym(handle, MH_SPM_SHIM_ENTRY));
  const mh_spm_shim_api* api = entry != nullptr ? entry() : nullptr;
  if (api == nullptr || api->struct_size < sizeof(mh_spm_shim_api))
    throw sdk::Error(MH_ERR_UNSUPPORTED, path + " is not megahost's SentencePiece bridge (no " MH_SPM_SHIM_ENTRY
                                                ") HINT: rebuild or reinstall the sentencepiece plugin");
  return api;
}

void append_ids(void* ctx, const int32_t* ids, size_t n) {
  auto* out = static_cast<std::vector<int32_t>*>(ctx);
  out->insert(out->end(), ids, ids + n);
}
void append_bytes(void* ctx, const char* bytes, size_t n) { static_cast<std::string*>(ctx)->append(bytes, n); }

const char* variant_name(SpmVariant v) {
  switch (v) {
    case SpmVariant::Megatron: return "SentencePieceTokenizer";
    case SpmVariant::Gpt: return "GPTSentencePieceTokenizer";
    case SpmVariant::Llama2: return "Llama2Tokenizer";
  }
  return "?";
}

}  // namespace

SpmTokenizer::SpmTokenizer(const std::string& shim_path, const std::string& model_file, SpmVariant variant,
                           int vocab_extra_ids)
    : model_file_(model_file), variant_(variant), sp_(load_shim(shim_path)) {
  if (!std::ifstream(model_file, std::ios::binary).good())
    throw SpmLoadError(model_file + ": cannot open the SentencePiece model",
                       "check tokenizer_model (Megatron's --tokenizer-model): it must be a readable .model file");
  char err[512] = "";
  model_ = sp_->load(model_file.c_str(), err, sizeof(err));
  if (model_ == nullptr)
    throw SpmLoadError(model_file + ": not a SentencePiece model (" + err + ")",
                       "pass the binary .model file written by spm_train, not the .vocab file or a HF tokenizer.json");
  piece_size_ = sp_->piece_size(model_);
  if (piece_size_ <= 0) {
    sp_->free_model(model_);
    throw SpmLoadError(model_file + ": the SentencePiece model has no pieces", "retrain it");
  }
  try {
    init_special_tokens(vocab_extra_ids);
  } catch (...) {
    sp_->free_model(model_);
    throw;
  }
}

SpmTokenizer::~SpmTokenizer() { sp_->free_model(model_); }

std::string SpmTokenizer::piece(int32_t id) const {
  std::string p;
  sp_->id_to_piece(model_, id, append_bytes, &p);
  return p;
}

void SpmTokenizer::init_special_tokens(int vocab_extra_ids) {
  const int unk = sp_->special_id(model_, 'u'), bos = sp_->special_id(model_, 'b'),
            eos = sp_->special_id(model_, 'e'), pad = sp_->special_id(model_, 'p');
  auto in_model = [&](int id) { return id >= 0 && id < piece_size_; };
  if (in_model(unk)) named_.emplace_back(MH_TOKEN_UNK, unk);
  if (variant_ == SpmVariant::Megatron) {
    add_megatron_special_tokens(vocab_extra_ids);
    return;
  }
  if (variant_ == SpmVariant::Llama2 && !in_model(bos))
    throw SpmLoadError(model_file_ + ": the model has no BOS piece (bos_id " + std::to_string(bos) +
                           "), which Llama2Tokenizer puts before every text",
                       "use GPTSentencePieceTokenizer for this model, or train it with a bos_id");
  if (in_model(bos)) named_.emplace_back(MH_TOKEN_BOS, bos);
  if (in_model(eos)) {
    named_.emplace_back(MH_TOKEN_EOS, eos);
    named_.emplace_back(MH_TOKEN_EOD, eos);  // Megatron: eod is eos for both variants
  }
  if (in_model(pad)) named_.emplace_back(MH_TOKEN_PAD, pad);
}

// Megatron's _SentencePieceTokenizer._initalize, step by step.
void SpmTokenizer::add_megatron_special_tokens(int vocab_extra_ids) {
  std::unordered_map<std::string, int32_t> vocab;  // Megatron's _vocab: piece -> id
  vocab.reserve(static_cast<size_t>(piece_size_) + 16);
  for (int i = 0; i < piece_size_; ++i) vocab[piece(i)] = i;
  auto add = [&](const std::string& token) -> int32_t {
    auto it = vocab.find(token);
    if (it == vocab.end()) {
      it = vocab.emplace(token, static_cast<int32_t>(vocab.size())).first;
      added_.push_back(token);
    }
    // A Python dict keeps a re-assigned key in its first position.
    for (auto& s : specials_)
      if (s.first == token) return s.second = it->second;
    specials_.emplace_back(token, it->second);
    return it->second;
  };
  // Megatron's id_to_piece raises IndexError for an id outside the model (e.g. pad_id -1).
  auto piece_or = [&](int id, const char* fallback) {
    return id >= 0 && id < piece_size_ ? piece(id) : std::string(fallback);
  };
  named_.emplace_back(MH_TOKEN_CLS, add("<CLS>"));
  named_.emplace_back(MH_TOKEN_SEP, add("<SEP>"));
  named_.emplace_back(MH_TOKEN_EOD, add("<EOD>"));
  named_.emplace_back(MH_TOKEN_MASK, add("<MASK>"));
  named_.emplace_back(MH_TOKEN_PAD, add(piece_or(sp_->special_id(model_, 'p'), "<PAD>")));
  named_.emplace_back(MH_TOKEN_BOS, add(piece_or(sp_->special_id(model_, 'b'), "<BOS>")));
  named_.emplace_back(MH_TOKEN_EOS, add(piece_or(sp_->special_id(model_, 'e'), "<EOS>")));
  for (int i = 0; i < vocab_extra_ids; ++i) add("<extra_id_" + std::to_string(i) + ">");
}

void SpmTokenizer::sp_encode(std::string_view text, std::vector<int32_t>& out) const {
  if (text.empty()) return;
  char err[512] = "";
  MH_CHECK(sp_->encode(model_, text.data(), text.size(), append_ids, &out, err, sizeof(err)) == 0, MH_ERR_INTERNAL,
           "sentencepiece encode failed with ", model_file_, ": ", err);
}

void SpmTokenizer::encode(std::string_view text, std::vector<int32_t>& out) const {
  const size_t valid = valid_utf8_prefix(text);
  MH_CHECK(valid == text.size(), MH_ERR_INVALID_ARG, "sentencepiece encode: invalid UTF-8 at byte ", valid,
           " HINT: SentencePiece tokenizers take UTF-8 text (Megatron reads it from JSON strings)");
  const size_t before = out.size();
  try {
    if (variant_ == SpmVariant::Llama2) out.push_back(sp_->special_id(model_, 'b'));
    if (variant_ != SpmVariant::Megatron || specials_.empty()) {
      sp_encode(text, out);
      return;
    }
    // Megatron (from NeMo): repeatedly take the earliest special token's text in the rest of
    // the input (ties: the first added), encode what precedes it, then emit its id.
    std::vector<size_t> next(specials_.size(), 0);  // next match of each token at or after idx
    for (size_t k = 0; k < specials_.size(); ++k) next[k] = text.find(specials_[k].first);
    size_t idx = 0;
    for (;;) {
      size_t best = std::string_view::npos, which = specials_.size();
      for (size_t k = 0; k < specials_.size(); ++k) {
        if (next[k] < idx) next[k] = text.find(specials_[k].first, idx);  // overlapped by the last match
        if (next[k] < best) best = next[k], which = k;
      }
      if (which == specials_.size()) break;
      sp_encode(text.substr(idx, best - idx), out);
      out.push_back(specials_[which].second);
      idx = best + specials_[which].first.size();
    }
    sp_encode(text.substr(idx), out);
  } catch (...) {
    out.resize(before);
    throw;
  }
}

std::vector<int32_t> SpmTokenizer::encode(std::string_view text) const {
  std::vector<int32_t> out;
  encode(text, out);
  return out;
}

void SpmTokenizer::check_ids(const int32_t* ids, size_t n) const {
  for (size_t i = 0; i < n; ++i)
    MH_CHECK(ids[i] >= 0 && ids[i] < vocab_size(), MH_ERR_INVALID_ARG, "sentencepiece decode: id ", ids[i],
             " at position ", i, " is outside the vocabulary [0, ", vocab_size(), ") of ", model_file_,
             " HINT: decode ids produced by this tokenizer (", variant_name(variant_), ")");
}

void SpmTokenizer::sp_decode(const int32_t* ids, size_t n, std::string& out) const {
  if (n == 0) return;
  char err[512] = "";
  MH_CHECK(sp_->decode(model_, ids, n, append_bytes, &out, err, sizeof(err)) == 0, MH_ERR_INTERNAL,
           "sentencepiece decode failed with ", model_file_, ": ", err);
}

void SpmTokenizer::decode(const int32_t* ids, size_t n, std::string& out) const {
  check_ids(ids, n);
  if (variant_ != SpmVariant::Megatron) {
    std::string text;
    sp_decode(ids, n, text);
    out += text;
    return;
  }
  // Megatron (from NeMo): each special token becomes " <TOKEN> " between decoded runs.
  std::string text;
  size_t last = 0;
  for (size_t i = 0; i < n; ++i) {
    const std::pair<std::string, int32_t>* special = nullptr;
    for (const auto& s : specials_)
      if (s.second == ids[i]) special = &s;
    if (special == nullptr) continue;
    sp_decode(ids + last, i - last, text);
    text += ' ';
    text += special->first;
    text += ' ';
    last = i + 1;
  }
  sp_decode(ids + last, n - last, text);
  out += text;
}

std::string SpmTokenizer::decode(const std::vector<int32_t>& ids) const {
  std::string out;
  decode(ids.data(), ids.size(), out);
  return out;
}

std::optional<int32_t> SpmTokenizer::special_token(std::string_view name) const {
  for (const auto& [n, id] : named_)
    if (n == name) return id;
  return std::nullopt;
}

}  // namespace megahost::tokenizers
