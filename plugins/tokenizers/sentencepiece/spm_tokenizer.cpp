#include "spm_tokenizer.h"

#include <sentencepiece_processor.h>

#include <fstream>
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

const char* variant_name(SpmVariant v) {
  switch (v) {
    case SpmVariant::Megatron: return "SentencePieceTokenizer";
    case SpmVariant::Gpt: return "GPTSentencePieceTokenizer";
    case SpmVariant::Llama2: return "Llama2Tokenizer";
  }
  return "?";
}

}  // namespace

SpmTokenizer::SpmTokenizer(const std::string& model_file, SpmVariant variant, int vocab_extra_ids)
    : model_file_(model_file), variant_(variant), sp_(std::make_unique<sentencepiece::SentencePieceProcessor>()) {
  if (!std::ifstream(model_file, std::ios::binary).good())
    throw SpmLoadError(model_file + ": cannot open the SentencePiece model",
                       "check tokenizer_model (Megatron's --tokenizer-model): it must be a readable .model file");
  const auto status = sp_->Load(model_file);
  if (!status.ok())
    throw SpmLoadError(model_file + ": not a SentencePiece model (" + status.ToString() + ")",
                       "pass the binary .model file written by spm_train, not the .vocab file or a HF tokenizer.json");
  piece_size_ = sp_->GetPieceSize();
  if (piece_size_ <= 0) throw SpmLoadError(model_file + ": the SentencePiece model has no pieces", "retrain it");

  const int unk = sp_->unk_id(), bos = sp_->bos_id(), eos = sp_->eos_id(), pad = sp_->pad_id();
  auto in_model = [&](int id) { return id >= 0 && id < piece_size_; };
  if (in_model(unk)) named_.emplace_back(MH_TOKEN_UNK, unk);
  if (variant == SpmVariant::Megatron) {
    add_megatron_special_tokens(vocab_extra_ids);
    return;
  }
  if (variant == SpmVariant::Llama2 && !in_model(bos))
    throw SpmLoadError(model_file + ": the model has no BOS piece (bos_id " + std::to_string(bos) +
                           "), which Llama2Tokenizer puts before every text",
                       "use GPTSentencePieceTokenizer for this model, or train it with a bos_id");
  if (in_model(bos)) named_.emplace_back(MH_TOKEN_BOS, bos);
  if (in_model(eos)) {
    named_.emplace_back(MH_TOKEN_EOS, eos);
    named_.emplace_back(MH_TOKEN_EOD, eos);  // Megatron: eod is eos for both variants
  }
  if (in_model(pad)) named_.emplace_back(MH_TOKEN_PAD, pad);
}

SpmTokenizer::~SpmTokenizer() = default;

// Megatron's _SentencePieceTokenizer._initalize, step by step.
void SpmTokenizer::add_megatron_special_tokens(int vocab_extra_ids) {
  std::unordered_map<std::string, int32_t> vocab;  // Megatron's _vocab: piece -> id
  vocab.reserve(static_cast<size_t>(piece_size_) + 16);
  for (int i = 0; i < piece_size_; ++i) vocab[sp_->IdToPiece(i)] = i;
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
    return id >= 0 && id < piece_size_ ? sp_->IdToPiece(id) : std::string(fallback);
  };
  named_.emplace_back(MH_TOKEN_CLS, add("<CLS>"));
  named_.emplace_back(MH_TOKEN_SEP, add("<SEP>"));
  named_.emplace_back(MH_TOKEN_EOD, add("<EOD>"));
  named_.emplace_back(MH_TOKEN_MASK, add("<MASK>"));
  named_.emplace_back(MH_TOKEN_PAD, add(piece_or(sp_->pad_id(), "<PAD>")));
  named_.emplace_back(MH_TOKEN_BOS, add(piece_or(sp_->bos_id(), "<BOS>")));
  named_.emplace_back(MH_TOKEN_EOS, add(piece_or(sp_->eos_id(), "<EOS>")));
  for (int i = 0; i < vocab_extra_ids; ++i) add("<extra_id_" + std::to_string(i) + ">");
}

void SpmTokenizer::sp_encode(std::string_view text, std::vector<int32_t>& out) const {
  if (text.empty()) return;
  thread_local std::vector<int> ids;  // int == int32_t here; reused across calls
  ids.clear();
  const auto status = sp_->Encode(text, &ids);
  MH_CHECK(status.ok(), MH_ERR_INTERNAL, "sentencepiece encode failed with ", model_file_, ": ", status.ToString());
  out.insert(out.end(), ids.begin(), ids.end());
}

void SpmTokenizer::encode(std::string_view text, std::vector<int32_t>& out) const {
  const size_t valid = valid_utf8_prefix(text);
  MH_CHECK(valid == text.size(), MH_ERR_INVALID_ARG, "sentencepiece encode: invalid UTF-8 at byte ", valid,
           " HINT: SentencePiece tokenizers take UTF-8 text (Megatron reads it from JSON strings)");
  const size_t before = out.size();
  try {
    if (variant_ == SpmVariant::Llama2) out.push_back(sp_->bos_id());
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
  thread_local std::vector<int> buf;
  thread_local std::string text;
  buf.assign(ids, ids + n);
  text.clear();
  const auto status = sp_->Decode(buf, &text);
  MH_CHECK(status.ok(), MH_ERR_INTERNAL, "sentencepiece decode failed with ", model_file_, ": ", status.ToString());
  out += text;
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
