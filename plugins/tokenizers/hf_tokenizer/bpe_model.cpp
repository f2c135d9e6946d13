#include "bpe_model.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstring>
#include <functional>

#include "load_error.h"
#include "unicode_classes.h"

namespace megahost::hf {
namespace {

struct ByteMap {
  uint32_t to_cp[256];
  int16_t from_cp[324];  // mapped code points are < U+0144
  ByteMap() {
    std::fill(std::begin(from_cp), std::end(from_cp), int16_t{-1});
    uint32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
      to_cp[b] = printable ? static_cast<uint32_t>(b) : next++;
      from_cp[to_cp[b]] = static_cast<int16_t>(b);
    }
  }
};
const ByteMap& byte_map() {
  static const ByteMap m;
  return m;
}

constexpr const char* kModelHint =
    "the model must be a BPE model as written by Hugging Face tokenizers: \"vocab\" {token: id}, \"merges\" "
    "[\"a b\", ...] or [[\"a\", \"b\"], ...]";

std::string shown(std::string_view s) {
  std::string out = "'";
  out.append(s.substr(0, 40));
  return out + (s.size() > 40 ? "...'" : "'");
}

inline uint64_t pair_key(int32_t l, int32_t r) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(l)) << 32) | static_cast<uint32_t>(r);
}
inline uint64_t mix(uint64_t k) { return (k * 0x9E3779B97F4A7C15ull) >> 17; }

// 64-bit hash of a short piece (<= 22 bytes).
inline uint64_t hash_bytes(std::string_view p) {
  uint64_t h = 0xCBF29CE484222325ull ^ p.size();
  size_t i = 0;
  for (; i + 8 <= p.size(); i += 8) {
    uint64_t w;
    std::memcpy(&w, p.data() + i, 8);
    h = (h ^ w) * 0x100000001B3ull;
    h ^= h >> 31;
  }
  uint64_t tail = 0;
  std::memcpy(&tail, p.data() + i, p.size() - i);
  h = (h ^ tail) * 0xFF51AFD7ED558CCDull;
  h ^= h >> 33;
  h *= 0xC4CEB9FE1A85EC53ull;
  return h ^ (h >> 29);
}

constexpr const char* kMetaspace = "\xE2\x96\x81";  // U+2581 '▁'

// Bytes of the run of "▁" at the start of s.
size_t leading_metaspaces(std::string_view s) {
  size_t p = 0;
  while (s.compare(p, 3, kMetaspace) == 0) p += 3;
  return p;
}

std::string fallback_token(int b) {
  static const char* kHex = "0123456789ABCDEF";
  return std::string("<0x") + kHex[b >> 4] + kHex[b & 15] + ">";
}

}  // namespace

uint32_t byte_to_unicode(uint8_t b) { return byte_map().to_cp[b]; }
int unicode_to_byte(uint32_t cp) { return cp < 324 ? byte_map().from_cp[cp] : -1; }

void append_utf8(uint32_t cp, std::string& out) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

BpeModel::BpeModel(const nlohmann::json& model, bool byte_level)
    : byte_level_(byte_level), cache_(new Shard[kShards]) {
  auto bad = [](const std::string& what) { return LoadError("model: " + what, kModelHint); };
  auto refuse = [](const std::string& what, const std::string& hint) { return LoadError("model: " + what, hint); };
  // Options this implementation does not have are refused, never ignored.
  auto is_null_or = [&](const char* key, auto ok) {
    auto it = model.find(key);
    return it == model.end() || it->is_null() || ok(*it);
  };
  if (!is_null_or("dropout", [](const nlohmann::json& v) { return v.is_number() && v.get<double>() == 0.0; }))
    throw refuse("BPE dropout is not implemented", "dropout is for training; set \"dropout\": null");
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"})
    if (!is_null_or(key, [](const nlohmann::json& v) { return v.is_string() && v.get<std::string>().empty(); }))
      throw refuse(sdk::str_cat("BPE with \"", key, "\" is not implemented"),
                   "hf-tokenizer implements byte-level BPE (GPT-2, Llama-3, GPT-NeoX) and SentencePiece-style BPE "
                   "(Llama-2); this looks like a word-suffix BPE (CLIP, original BPE)");
  auto flag = [&](const char* key) {
    auto it = model.find(key);
    if (it == model.end() || it->is_null()) return false;
    if (!it->is_boolean()) throw bad(sdk::str_cat("\"", key, "\" must be true or false"));
    return it->get<bool>();
  };
  byte_fallback_ = flag("byte_fallback");
  fuse_unk_ = flag("fuse_unk");
  ignore_merges_ = flag("ignore_merges");

  // Vocabulary.
  auto vit = model.find("vocab");
  if (vit == model.end() || !vit->is_object() || vit->empty()) throw bad("\"vocab\" must be a non-empty object");
  int64_t max_id = -1;
  vocab_.reserve(vit->size());
  for (const auto& [token, value] : vit->items()) {
    if (!value.is_number_integer()) throw bad(sdk::str_cat("the id of token ", shown(token), " is not an integer"));
    const int64_t id = value.get<int64_t>();
    if (id < 0 || id >= (int64_t{1} << 30)) throw bad(sdk::str_cat("token ", shown(token), " has the id ", id));
    vocab_.emplace(token, static_cast<int32_t>(id));
    max_id = std::max(max_id, id);
  }
  id_to_token_.assign(static_cast<size_t>(max_id + 1), std::string());
  for (const auto& [token, id] : vocab_) {
    if (!id_to_token_[id].empty()) throw bad(sdk::str_cat("id ", id, " is used by two tokens, e.g. ", shown(token)));
    id_to_token_[id] = token;
  }
  for (const auto& [token, id] : vocab_) {
    uint32_t cp;
    const auto* s = reinterpret_cast<const unsigned char*>(token.data());
    if (!token.empty() && decode_utf8(s, token.size(), &cp) == token.size() && cp != kInvalidCodePoint)
      char_id_.emplace(cp, id);
  }
  byte_token_.fill(-1);
  for (int b = 0; b < 256; ++b) {
    std::string key;
    if (byte_level_) append_utf8(byte_to_unicode(static_cast<uint8_t>(b)), key);
    else if (byte_fallback_) key = fallback_token(b);
    auto it = key.empty() ? vocab_.end() : vocab_.find(key);
    if (it != vocab_.end()) byte_token_[b] = it->second;
  }
  if (auto it = model.find("unk_token"); it != model.end() && !it->is_null()) {
    if (!it->is_string()) throw bad("\"unk_token\" must be a string or null");
    auto u = vocab_.find(it->get<std::string>());
    if (u == vocab_.end())
      throw bad(sdk::str_cat("unk_token ", shown(it->get<std::string>()), " is not in the vocab"));
    unk_id_ = u->second;
  }

  // Merges: rank = position; a repeated pair keeps its last rank (a map insert, as in HF).
  auto mit = model.find("merges");
  if (mit == model.end() || !mit->is_array()) throw bad("\"merges\" must be an array");
  size_t cap = 16;
  while (cap < 2 * mit->size()) cap *= 2;
  merges_.assign(cap, Merge{kNoKey, 0, 0});
  merge_mask_ = cap - 1;
  auto id_of = [&](const std::string& t, size_t rank) {
    auto it = vocab_.find(t);
    if (it == vocab_.end()) throw bad(sdk::str_cat("merge ", rank, " uses ", shown(t), ", which is not in the vocab"));
    return it->second;
  };
  size_t rank = 0;
  for (const auto& m : *mit) {
    std::string a, b;
    if (m.is_string()) {  // tokenizers < 0.20: "a b"
      const std::string& s = m.get_ref<const std::string&>();
      const size_t sp = s.find(' ');
      if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos)
        throw bad(sdk::str_cat("merge ", rank, " ", shown(s), " is not two tokens separated by one space"));
      a = s.substr(0, sp), b = s.substr(sp + 1);
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {  // >= 0.20: ["a", "b"]
      a = m[0].get<std::string>(), b = m[1].get<std::string>();
    } else {
      throw bad(sdk::str_cat("merge ", rank, " is neither \"a b\" nor [\"a\", \"b\"]"));
    }
    const int32_t l = id_of(a, rank), r = id_of(b, rank), merged = id_of(a + b, rank);
    const uint64_t key = pair_key(l, r);
    for (uint64_t i = mix(key) & merge_mask_;; i = (i + 1) & merge_mask_) {
      if (merges_[i].key == kNoKey || merges_[i].key == key) {
        merges_[i] = Merge{key, static_cast<int32_t>(rank), merged};
        break;
      }
    }
    ++rank;
  }
  num_merges_ = rank;

  // Metaspace split (see bpe_model.h): safe when every token is "▁*" followed by no "▁".
  if (!byte_level_ && !ignore_merges_) {
    split_at_metaspace_ = std::none_of(vocab_.begin(), vocab_.end(), [](const auto& kv) {
      return kv.first.find(kMetaspace, leading_metaspaces(kv.first)) != std::string::npos;
    });
  }
}

BpeModel::~BpeModel() = default;

std::optional<int32_t> BpeModel::token_to_id(const std::string& token) const {
  auto it = vocab_.find(token);
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

const std::string& BpeModel::id_to_token(int32_t id) const {
  static const std::string kNone;
  return id >= 0 && static_cast<size_t>(id) < id_to_token_.size() ? id_to_token_[id] : kNone;
}

const BpeModel::Merge* BpeModel::find_merge(int32_t left, int32_t right) const {
  const uint64_t key = pair_key(left, right);
  for (uint64_t i = mix(key) & merge_mask_;; i = (i + 1) & merge_mask_) {
    const Merge& m = merges_[i];
    if (m.key == key) return &m;
    if (m.key == kNoKey) return nullptr;
  }
}

void BpeModel::initial_symbols(std::string_view piece, std::vector<int32_t>& syms) const {
  bool last_unk = false;
  auto unknown = [&] {
    if (!unk_id_) return;  // HF drops a character it can represent in no way
    if (!(fuse_unk_ && last_unk)) syms.push_back(*unk_id_);
    last_unk = true;
  };
  const auto* s = reinterpret_cast<const unsigned char*>(piece.data());
  for (size_t p = 0; p < piece.size();) {
    if (byte_level_) {
      const int32_t id = byte_token_[s[p++]];
      if (id < 0) unknown();
      else syms.push_back(id), last_unk = false;
      continue;
    }
    uint32_t cp;
    const size_t len = decode_utf8(s + p, piece.size() - p, &cp);
    auto it = cp == kInvalidCodePoint ? char_id_.end() : char_id_.find(cp);
    if (it != char_id_.end()) {
      syms.push_back(it->second), last_unk = false;
    } else if (byte_fallback_ && std::all_of(s + p, s + p + len, [&](unsigned char b) { return byte_token_[b] >= 0; })) {
      for (size_t k = 0; k < len; ++k) syms.push_back(byte_token_[s[p + k]]);
      last_unk = false;
    } else {
      unknown();
    }
    p += len;
  }
}

void BpeModel::merge_all(std::vector<int32_t>& syms) const {
  if (syms.size() < 2) return;
  // HF's Word::merge_all: a min-heap of (rank, position) over adjacent pairs; an entry is
  // stale when its left symbol was merged away or the pair there changed since.
  struct Sym {
    int32_t id, prev, next;
    bool alive;
  };
  struct Cand {
    int32_t rank, pos, merged;
    bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  thread_local std::vector<Sym> sym;
  thread_local std::vector<Cand> heap;
  const auto n = static_cast<int32_t>(syms.size());
  sym.resize(syms.size());
  heap.clear();
  for (int32_t i = 0; i < n; ++i) sym[i] = {syms[i], i - 1, i + 1 < n ? i + 1 : -1, true};
  auto push = [&](int32_t pos) {
    const int32_t nx = sym[pos].next;
    if (nx < 0) return;
    if (const Merge* m = find_merge(sym[pos].id, sym[nx].id)) {
      heap.push_back({m->rank, pos, m->merged});
      std::push_heap(heap.begin(), heap.end(), std::greater<>());
    }
  };
  for (int32_t i = 0; i + 1 < n; ++i) push(i);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), std::greater<>());
    const Cand c = heap.back();
    heap.pop_back();
    Sym& left = sym[c.pos];
    if (!left.alive || left.next < 0) continue;
    const Merge* m = find_merge(left.id, sym[left.next].id);
    if (m == nullptr || m->merged != c.merged) continue;
    Sym& right = sym[left.next];
    left.id = c.merged;
    right.alive = false;
    left.next = right.next;
    if (left.next >= 0) sym[left.next].prev = c.pos;
    if (left.prev >= 0) push(left.prev);
    push(c.pos);
  }
  syms.clear();
  for (int32_t i = 0; i >= 0; i = sym[i].next) syms.push_back(sym[i].id);
}

void BpeModel::tokenize_uncached(std::string_view piece, std::vector<int32_t>& out) const {
  if (piece.empty()) return;
  if (ignore_merges_) {
    // The whole piece, as the vocabulary writes it, may be a token: emit it without merging.
    thread_local std::string key;
    key.clear();
    if (byte_level_)
      for (unsigned char b : piece) append_utf8(byte_to_unicode(b), key);
    else
      key.assign(piece);
    if (auto it = vocab_.find(key); it != vocab_.end()) {
      out.push_back(it->second);
      return;
    }
  }
  thread_local std::vector<int32_t> syms;
  syms.clear();
  initial_symbols(piece, syms);
  merge_all(syms);
  out.insert(out.end(), syms.begin(), syms.end());
}

void BpeModel::tokenize(std::string_view piece, std::vector<int32_t>& out) const {
  if (!split_at_metaspace_) {
    tokenize_cached(piece, out);
    return;
  }
  // Chunks start at each run of "▁" that follows another character: "▁▁Hello▁world" ->
  // "▁▁Hello", "▁world".
  size_t begin = 0;
  for (size_t p = leading_metaspaces(piece); p < piece.size();) {
    const size_t hit = piece.find(kMetaspace, p);
    if (hit == std::string_view::npos) break;
    tokenize_cached(piece.substr(begin, hit - begin), out);
    begin = hit;
    p = hit + leading_metaspaces(piece.substr(hit));
  }
  tokenize_cached(piece.substr(begin), out);
}

void BpeModel::tokenize_cached(std::string_view piece, std::vector<int32_t>& out) const {
  if (piece.size() > kKeyBytes || piece.empty()) {
    tokenize_uncached(piece, out);
    return;
  }
  const uint64_t h64 = hash_bytes(piece);
  // Three independent parts of the hash: shard (top 6 bits), first slot (low bits), and the
  // tag kept in the slot (bits 26..57, never 0: 0 marks an empty slot).
  Shard& shard = cache_[h64 >> 58];
  const size_t home = static_cast<size_t>(h64);
  const uint32_t h = static_cast<uint32_t>(h64 >> 26) | 1u;
  constexpr size_t kMask = kSlotsPerShard - 1;
  auto same = [&](const Slot& s) {
    return s.hash == h && s.key_len == piece.size() && std::memcmp(s.key, piece.data(), piece.size()) == 0;
  };
  {
    std::lock_guard<std::mutex> lock(shard.mu);
    if (!shard.slots.empty())
      for (size_t i = home & kMask; shard.slots[i].hash != 0; i = (i + 1) & kMask)
        if (same(shard.slots[i])) {
          out.insert(out.end(), shard.slots[i].ids, shard.slots[i].ids + shard.slots[i].n_ids);
          return;
        }
  }
  const size_t start = out.size();
  tokenize_uncached(piece, out);  // outside the lock
  const size_t n_ids = out.size() - start;
  if (n_ids > kSlotIds) return;
  std::lock_guard<std::mutex> lock(shard.mu);
  if (shard.slots.empty()) shard.slots.assign(kSlotsPerShard, Slot{});
  if (2 * (shard.used + 1) > kSlotsPerShard) {
    std::fill(shard.slots.begin(), shard.slots.end(), Slot{});
    shard.used = 0;
  }
  size_t i = home & kMask;
  for (; shard.slots[i].hash != 0; i = (i + 1) & kMask)
    if (same(shard.slots[i])) return;  // another thread was first
  Slot& s = shard.slots[i];
  s.hash = h;
  s.key_len = static_cast<uint8_t>(piece.size());
  s.n_ids = static_cast<uint8_t>(n_ids);
  std::memcpy(s.key, piece.data(), piece.size());
  std::copy(out.begin() + static_cast<std::ptrdiff_t>(start), out.end(), s.ids);
  ++shard.used;
}

}  // namespace megahost::hf
