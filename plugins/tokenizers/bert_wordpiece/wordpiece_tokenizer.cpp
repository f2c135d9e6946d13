#include "wordpiece_tokenizer.h"

#include <cstring>
#include <fstream>
#include <unordered_map>
#include <iterator>
#include <sstream>

#include "unicode_tables.h"

namespace megahost::tokenizers::bert {
namespace {

bool is_ascii_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'; }

std::string_view strip(std::string_view s) {
  while (!s.empty() && is_ascii_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_ascii_space(s.back())) s.remove_suffix(1);
  return s;
}

bool valid_utf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  uint32_t cp;
  for (size_t i = 0; i < s.size();) {
    const size_t len = decode_utf8(p + i, s.size() - i, &cp);
    if (len == 0) return false;
    i += len;
  }
  return true;
}

// Python's str.replace: every non-overlapping occurrence, left to right.
void replace_all(std::string& s, std::string_view from, std::string_view to) {
  std::string out;
  size_t pos = 0;
  for (size_t hit; (hit = s.find(from, pos)) != std::string::npos; pos = hit + from.size()) {
    out.append(s, pos, hit - pos);
    out.append(to);
  }
  if (pos == 0) return;
  out.append(s, pos, std::string::npos);
  s.swap(out);
}

}  // namespace

BertWordPieceTokenizer::BertWordPieceTokenizer(const std::string& vocab_file, bool lower_case,
                                               int64_t vocab_extra_ids)
    : basic_(lower_case) {
  load(vocab_file);
  const auto id_of = [&](const char* name) {
    for (size_t i = 0; i < tokens_.size(); ++i)
      if (tokens_[i] == name) return static_cast<int32_t>(i);
    throw VocabError(MH_ERR_INVALID_ARG, vocab_file + ": no line '" + name + "'",
                     "a BERT vocabulary has [PAD], [UNK], [CLS], [SEP] and [MASK]; is this a BERT vocab.txt?");
  };
  special_.pad = id_of("[PAD]");
  special_.unk = id_of("[UNK]");
  special_.cls = id_of("[CLS]");
  special_.sep = id_of("[SEP]");
  special_.mask = id_of("[MASK]");
  // Megatron's _BertWordPieceTokenizer appends these (eod and eos are [EOS]).
  add_token("[BOS]");
  add_token("[EOS]");
  special_.bos = id_of("[BOS]");
  special_.eos = id_of("[EOS]");
  for (int64_t i = 0; i < vocab_extra_ids; ++i) add_token("<extra_id_" + std::to_string(i) + ">");
  index();
}

void BertWordPieceTokenizer::load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw VocabError(MH_ERR_NOT_FOUND, path + ": cannot open the vocabulary",
                     "set vocab_file (Megatron's --vocab-file) to a BERT vocab.txt, one token per line");
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // Lines end with \n, \r\n or \r (Python's universal newlines); a last line without one counts.
  std::unordered_map<std::string, size_t> seen;
  size_t line_start = 0;
  while (line_start < text.size()) {
    size_t end = text.find_first_of("\r\n", line_start);
    size_t next = end == std::string::npos ? text.size() : end + 1;
    if (end == std::string::npos) end = text.size();
    else if (text[end] == '\r' && next < text.size() && text[next] == '\n') ++next;
    const std::string token(strip(std::string_view(text).substr(line_start, end - line_start)));
    const size_t line_no = tokens_.size() + 1;
    if (!valid_utf8(token))
      throw VocabError(MH_ERR_INVALID_ARG, path + ":" + std::to_string(line_no) + ": not valid UTF-8",
                       "the vocabulary must be UTF-8 text");
    const auto [it, fresh] = seen.emplace(token, line_no);
    // Megatron would keep the later id and still count both lines: ids past it would shift.
    if (!fresh)
      throw VocabError(MH_ERR_INVALID_ARG,
                       path + ":" + std::to_string(line_no) + ": token '" + token + "' repeats line " +
                           std::to_string(it->second),
                       "every line of a WordPiece vocabulary must be a different token (blank lines count)");
    tokens_.push_back(token);
    line_start = next;
  }
  if (tokens_.empty())
    throw VocabError(MH_ERR_INVALID_ARG, path + ": the vocabulary is empty", "one token per line, id = line number");
}

void BertWordPieceTokenizer::add_token(const std::string& token) {
  for (const auto& t : tokens_)
    if (t == token) return;
  tokens_.push_back(token);
}

void BertWordPieceTokenizer::index() {
  for (const auto& t : tokens_) {
    max_start_bytes_ = std::max(max_start_bytes_, t.size());
    if (t.size() > 2 && t.compare(0, 2, "##") == 0)
      max_continuation_bytes_ = std::max(max_continuation_bytes_, t.size() - 2);
  }
  table_.build(tokens_);  // views into tokens_, which no longer changes
}

uint64_t BertWordPieceTokenizer::TokenTable::hash(std::string_view key, bool continuation) {
  uint64_t h = continuation ? 0x9E3779B97F4A7C15ull : 0xCBF29CE484222325ull;  // FNV-1a, two seeds
  for (unsigned char c : key) h = (h ^ c) * 0x100000001B3ull;
  return h ^ (h >> 29);
}

void BertWordPieceTokenizer::TokenTable::build(const std::vector<std::string>& tokens) {
  size_t cap = 16;
  while (cap < 4 * tokens.size()) cap *= 2;  // two keys at most per token, load <= 1/2
  slots_.assign(cap, Slot{0, nullptr, 0, -1});
  mask_ = cap - 1;
  for (size_t i = 0; i < tokens.size(); ++i) {
    const std::string_view t = tokens[i];
    insert(t, false, static_cast<int32_t>(i));
    if (t.size() > 2 && t.compare(0, 2, "##") == 0) insert(t.substr(2), true, static_cast<int32_t>(i));
  }
}

void BertWordPieceTokenizer::TokenTable::insert(std::string_view key, bool continuation, int32_t id) {
  const uint64_t h = hash(key, continuation);
  uint64_t i = h & mask_;
  while (slots_[i].id >= 0) i = (i + 1) & mask_;  // keys are unique: the vocabulary has no repeats
  slots_[i] = Slot{h, key.data(), static_cast<uint32_t>(key.size()), id};
}

int32_t BertWordPieceTokenizer::TokenTable::find(std::string_view key, bool continuation) const {
  const uint64_t h = hash(key, continuation);
  for (uint64_t i = h & mask_;; i = (i + 1) & mask_) {
    const Slot& s = slots_[i];
    if (s.id < 0) return -1;
    if (s.hash == h && s.len == key.size() && std::memcmp(s.data, key.data(), key.size()) == 0) return s.id;
  }
}

std::optional<int32_t> BertWordPieceTokenizer::find(std::string_view token) const {
  const int32_t id = table_.find(token, false);
  if (id < 0) return std::nullopt;
  return id;
}

void BertWordPieceTokenizer::wordpiece(const uint32_t* cps, size_t n, std::vector<int32_t>& out) const {
  if (n > kMaxWordChars) {
    out.push_back(special_.unk);
    return;
  }
  // The word's UTF-8 and the byte offset of every code point boundary (n + 1 of them).
  thread_local std::string bytes;
  thread_local std::vector<size_t> at;
  bytes.clear();
  at.clear();
  for (size_t i = 0; i < n; ++i) {
    at.push_back(bytes.size());
    append_utf8(cps[i], bytes);
  }
  at.push_back(bytes.size());
  const size_t first_piece = out.size();
  for (size_t start = 0; start < n;) {
    const bool continuation = start > 0;
    const size_t max_bytes = start == 0 ? max_start_bytes_ : max_continuation_bytes_;
    size_t end = n;
    while (end > start && at[end] - at[start] > max_bytes) --end;  // no token is that long
    int32_t id = -1;
    for (; end > start; --end) {
      id = table_.find(std::string_view(bytes).substr(at[start], at[end] - at[start]), continuation);
      if (id >= 0) break;
    }
    if (id < 0) {  // the rest matches nothing: the whole word is [UNK]
      out.resize(first_piece);
      out.push_back(special_.unk);
      return;
    }
    out.push_back(id);
    start = end;
  }
}

void BertWordPieceTokenizer::encode(std::string_view utf8, std::vector<int32_t>& out) const {
  thread_local Words words;
  basic_.split(utf8, words);  // throws before out changes
  for (size_t w = 0; w < words.size(); ++w) {
    const size_t b = words.begin_of(w);
    wordpiece(words.cps.data() + b, words.ends[w] - b, out);
  }
}

std::vector<int32_t> BertWordPieceTokenizer::encode(std::string_view utf8) const {
  std::vector<int32_t> ids;
  encode(utf8, ids);
  return ids;
}

void BertWordPieceTokenizer::decode(const int32_t* ids, size_t n, std::string& out) const {
  std::string text;
  for (size_t i = 0; i < n; ++i) {
    MH_CHECK(ids[i] >= 0 && ids[i] < vocab_size(), MH_ERR_INVALID_ARG, "bert-wordpiece decode: id ", ids[i],
             " (position ", i, ") is outside the vocabulary [0, ", vocab_size(),
             ") HINT: decode ids produced with the same vocab_file");
    if (i > 0) text.push_back(' ');
    text += tokens_[static_cast<size_t>(ids[i])];
  }
  replace_all(text, " ##", "");
  text = std::string(strip(text));
  // Megatron's clean_up_tokenization, in its order.
  static const std::pair<std::string_view, std::string_view> kCleanUp[] = {
      {" .", "."},     {" ?", "?"},     {" !", "!"},     {" ,", ","},     {" ' ", "'"},
      {" n't", "n't"}, {" 'm", "'m"},   {" 's", "'s"},   {" 've", "'ve"}, {" 're", "'re"},
  };
  for (const auto& [from, to] : kCleanUp) replace_all(text, from, to);
  out += text;
}

std::string BertWordPieceTokenizer::decode(const std::vector<int32_t>& ids) const {
  std::string s;
  decode(ids.data(), ids.size(), s);
  return s;
}

}  // namespace megahost::tokenizers::bert
