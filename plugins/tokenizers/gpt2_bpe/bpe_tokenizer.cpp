#include "bpe_tokenizer.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <fstream>
#include <functional>
#include <sstream>

#include "pretokenizer.h"
#include "unicode_classes.h"

namespace megahost::tokenizers {
namespace {

constexpr const char* kVocabHint =
    "vocab_file must be GPT-2's encoder.json (Megatron's --vocab-file, e.g. gpt2-vocab.json), "
    "a JSON object {\"token\": id} whose ids are 0..N-1";
constexpr const char* kMergesHint =
    "merge_file must be GPT-2's vocab.bpe (Megatron's --merge-file, e.g. gpt2-merges.txt): an "
    "optional '#version' line, then one merge 'left right' per line, from the same tokenizer as "
    "vocab_file";

// The byte -> code point table of GPT-2's bytes_to_unicode().
struct ByteMap {
  uint32_t to_unicode[256];
  int16_t from_unicode[512];  // every mapped code point is < 0x144
  ByteMap() {
    std::fill(std::begin(from_unicode), std::end(from_unicode), int16_t{-1});
    uint32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
      to_unicode[b] = printable ? static_cast<uint32_t>(b) : next++;
      from_unicode[to_unicode[b]] = static_cast<int16_t>(b);
    }
  }
};
const ByteMap& byte_map() {
  static const ByteMap m;
  return m;
}

// A vocabulary/merges token (written in GPT-2's byte alphabet) -> the raw bytes it stands for.
// A token with a character outside the alphabet (an added special token) keeps its UTF-8.
std::string token_to_bytes(std::string_view token) {
  std::string out;
  out.reserve(token.size());
  const auto* s = reinterpret_cast<const unsigned char*>(token.data());
  for (size_t p = 0; p < token.size();) {
    uint32_t cp;
    const size_t len = decode_utf8(s + p, token.size() - p, &cp);
    const int b = gpt2_unicode_to_byte(cp);
    if (b < 0) return std::string(token);
    out.push_back(static_cast<char>(b));
    p += len;
  }
  return out;
}

std::string read_file(const std::string& path, const char* key, const char* hint) {
  std::ifstream f(path, std::ios::binary);
  if (!f) {
    throw BpeLoadError(MH_ERR_NOT_FOUND, key,
                       sdk::str_cat("gpt2-bpe: cannot open ", key, " '", path, "': ", std::strerror(errno)), hint);
  }
  std::ostringstream ss;
  ss << f.rdbuf();
  if (f.bad()) {
    throw BpeLoadError(MH_ERR_UNAVAILABLE, key, sdk::str_cat("gpt2-bpe: cannot read ", key, " '", path, "'"), hint);
  }
  return ss.str();
}

// Shows a token in messages: printable, bounded.
std::string quote(std::string_view s) {
  std::string out = "'";
  out.append(s.substr(0, 40));
  if (s.size() > 40) out.append("...");
  return out + "'";
}

inline uint64_t pair_key(int32_t left, int32_t right) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
}
inline uint64_t mix(uint64_t key) { return (key * 0x9E3779B97F4A7C15ull) >> 20; }

// Hash of a short piece, 8 bytes at a time; never 0 (0 marks an empty cache slot).
inline uint64_t hash_piece(std::string_view p) {
  uint64_t h = 0x9E3779B97F4A7C15ull ^ (p.size() * 0xC2B2AE3D27D4EB4Full);
  size_t i = 0;
  for (; i + 8 <= p.size(); i += 8) {
    uint64_t w;
    std::memcpy(&w, p.data() + i, 8);
    h = (h ^ w) * 0xFF51AFD7ED558CCDull;
    h ^= h >> 32;
  }
  uint64_t tail = 0;
  std::memcpy(&tail, p.data() + i, p.size() - i);
  h = (h ^ tail) * 0xC4CEB9FE1A85EC53ull;
  h ^= h >> 29;
  h *= 0xFF51AFD7ED558CCDull;
  h ^= h >> 32;
  return h == 0 ? 1 : h;
}

}  // namespace

uint32_t gpt2_byte_to_unicode(uint8_t b) { return byte_map().to_unicode[b]; }
int gpt2_unicode_to_byte(uint32_t cp) { return cp < 512 ? byte_map().from_unicode[cp] : -1; }

Gpt2BpeTokenizer::Gpt2BpeTokenizer(const std::string& vocab_file, const std::string& merge_file)
    : cache_(new CacheShard[kCacheShards]) {
  std::unordered_map<std::string, int32_t> bytes_to_id;
  load_vocab(vocab_file, bytes_to_id);
  load_merges(merge_file, bytes_to_id);
}

Gpt2BpeTokenizer::~Gpt2BpeTokenizer() = default;

void Gpt2BpeTokenizer::load_vocab(const std::string& path, std::unordered_map<std::string, int32_t>& bytes_to_id) {
  const std::string text = read_file(path, "vocab_file", kVocabHint);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    const size_t at = std::min<size_t>(e.byte, text.size());
    const size_t line = 1 + static_cast<size_t>(std::count(text.begin(), text.begin() + at, '\n'));
    throw BpeLoadError(MH_ERR_INVALID_ARG, "vocab_file",
                       sdk::str_cat("gpt2-bpe: vocab_file '", path, "' is not valid JSON (line ", line, "): ", e.what()),
                       kVocabHint);
  }
  auto bad = [&](const std::string& what) {
    return BpeLoadError(MH_ERR_INVALID_ARG, "vocab_file", sdk::str_cat("gpt2-bpe: vocab_file '", path, "': ", what),
                        kVocabHint);
  };
  if (!j.is_object() || j.empty()) throw bad("expected a non-empty JSON object {\"token\": id, ...}");
  const size_t n = j.size();
  if (n > static_cast<size_t>(INT32_MAX)) throw bad("too many tokens");
  token_bytes_.assign(n, std::string());
  std::vector<bool> seen(n, false);
  for (const auto& [token, value] : j.items()) {
    if (!value.is_number_integer()) throw bad(sdk::str_cat("the id of token ", quote(token), " is not an integer"));
    const int64_t id = value.get<int64_t>();
    if (id < 0 || id >= static_cast<int64_t>(n))
      throw bad(sdk::str_cat("token ", quote(token), " has id ", id, ", outside 0..", n - 1));
    if (seen[id]) throw bad(sdk::str_cat("id ", id, " is used twice (again by token ", quote(token), ")"));
    seen[id] = true;
    std::string bytes = token_to_bytes(token);
    token_bytes_[id] = bytes;
    // Two tokens for the same bytes can only come from added tokens; the lower id wins.
    auto [it, inserted] = bytes_to_id.emplace(std::move(bytes), static_cast<int32_t>(id));
    if (!inserted && id < it->second) it->second = static_cast<int32_t>(id);
  }
  for (int b = 0; b < 256; ++b) {
    auto it = bytes_to_id.find(std::string(1, static_cast<char>(b)));
    if (it == bytes_to_id.end())
      throw bad(sdk::str_cat("no token for byte ", b, " (a byte-level vocabulary has all 256)"));
    byte_id_[b] = it->second;
  }
  auto eod = j.find("<|endoftext|>");
  if (eod != j.end()) eod_id_ = eod->get<int32_t>();
}

void Gpt2BpeTokenizer::load_merges(const std::string& path,
                                   const std::unordered_map<std::string, int32_t>& bytes_to_id) {
  const std::string text = read_file(path, "merge_file", kMergesHint);
  struct Merge {
    int32_t left, right, merged;
  };
  std::vector<Merge> merges;
  merges.reserve(static_cast<size_t>(std::count(text.begin(), text.end(), '\n')) + 1);

  size_t line_no = 0;
  for (size_t pos = 0; pos < text.size();) {
    size_t eol = text.find('\n', pos);
    if (eol == std::string::npos) eol = text.size();
    std::string_view line(text.data() + pos, eol - pos);
    pos = eol + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) continue;
    if (line_no == 1 && line.rfind("#version", 0) == 0) continue;

    auto bad = [&](const std::string& what) {
      return BpeLoadError(MH_ERR_INVALID_ARG, "merge_file",
                          sdk::str_cat("gpt2-bpe: merge_file '", path, "' line ", line_no, ": ", what), kMergesHint);
    };
    const size_t space = line.find(' ');
    if (space == 0 || space == std::string_view::npos || space + 1 == line.size() ||
        line.find_first_of(" \t", space + 1) != std::string_view::npos)
      throw bad(sdk::str_cat("expected two tokens separated by one space, got ", quote(line)));
    const std::string left = token_to_bytes(line.substr(0, space));
    const std::string right = token_to_bytes(line.substr(space + 1));
    auto find_id = [&](const std::string& bytes, std::string_view shown, const char* role) {
      auto it = bytes_to_id.find(bytes);
      if (it == bytes_to_id.end())
        throw bad(sdk::str_cat("the ", role, " ", quote(shown), " is not a token of the vocab_file"));
      return it->second;
    };
    const int32_t l = find_id(left, line.substr(0, space), "left token");
    const int32_t r = find_id(right, line.substr(space + 1), "right token");
    const int32_t m = find_id(left + right, line, "merged token of");
    merges.push_back({l, r, m});
  }

  size_t cap = 16;
  while (cap < 2 * merges.size()) cap *= 2;
  merges_.assign(cap, MergeSlot{kEmptyKey, 0, 0});
  merge_mask_ = cap - 1;
  // Rank = position among the merges; a repeated pair keeps its last rank, as GPT-2's
  // dict(zip(merges, range(len(merges)))) does.
  for (size_t rank = 0; rank < merges.size(); ++rank)
    add_merge(merges[rank].left, merges[rank].right, static_cast<int32_t>(rank), merges[rank].merged);
  num_merges_ = merges.size();

  // A merge (l, r) -> m can only fire once l and r exist, so if every merge that builds a
  // token ranks before every merge that uses it, a pair created by a merge always ranks after
  // that merge. Then merging pairs one at a time in (rank, position) order (the heap) gives
  // exactly GPT-2's rounds. Byte-level BPE training writes merges in this order.
  std::vector<int32_t> built_last(token_bytes_.size(), -1), used_first(token_bytes_.size(), INT32_MAX);
  for (const MergeSlot& s : merges_) {
    if (s.key == kEmptyKey) continue;
    const auto l = static_cast<size_t>(s.key >> 32), r = static_cast<size_t>(s.key & 0xFFFFFFFFu);
    built_last[s.merged] = std::max(built_last[s.merged], s.rank);
    used_first[l] = std::min(used_first[l], s.rank);
    used_first[r] = std::min(used_first[r], s.rank);
  }
  merges_in_creation_order_ = true;
  for (size_t t = 0; t < token_bytes_.size(); ++t)
    if (built_last[t] >= 0 && built_last[t] >= used_first[t]) merges_in_creation_order_ = false;
}

void Gpt2BpeTokenizer::add_merge(int32_t left, int32_t right, int32_t rank, int32_t merged) {
  const uint64_t key = pair_key(left, right);
  for (uint64_t i = mix(key) & merge_mask_;; i = (i + 1) & merge_mask_) {
    MergeSlot& s = merges_[i];
    if (s.key == kEmptyKey || s.key == key) {
      s = MergeSlot{key, rank, merged};
      return;
    }
  }
}

const Gpt2BpeTokenizer::MergeSlot* Gpt2BpeTokenizer::find_merge(int32_t left, int32_t right) const {
  const uint64_t key = pair_key(left, right);
  for (uint64_t i = mix(key) & merge_mask_;; i = (i + 1) & merge_mask_) {
    const MergeSlot& s = merges_[i];
    if (s.key == key) return &s;
    if (s.key == kEmptyKey) return nullptr;
  }
}

void Gpt2BpeTokenizer::bpe_piece(std::string_view piece, std::vector<int32_t>& out) const {
  if (piece.size() >= kHeapMinPieceBytes && merges_in_creation_order_)
    bpe_piece_heap(piece, out);
  else
    bpe_piece_reference(piece, out);
}

void Gpt2BpeTokenizer::bpe_piece_heap(std::string_view piece, std::vector<int32_t>& out) const {
  // Symbols in a doubly linked list over the piece's bytes; a merged symbol keeps the index of
  // its left part, so (rank, index) orders candidates as GPT-2 does: best rank, then leftmost.
  struct Symbol {
    int32_t id;  // -1 once merged into its left neighbour
    int32_t prev, next;
  };
  struct Candidate {
    int32_t rank, pos;
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  const auto n = static_cast<int32_t>(piece.size());
  std::vector<Symbol> sym(piece.size());
  for (int32_t i = 0; i < n; ++i) sym[i] = {byte_id_[static_cast<unsigned char>(piece[i])], i - 1, i + 1 < n ? i + 1 : -1};
  std::vector<Candidate> heap;
  auto push_pair = [&](int32_t pos) {
    const int32_t nx = sym[pos].next;
    if (nx < 0) return;
    if (const MergeSlot* s = find_merge(sym[pos].id, sym[nx].id)) {
      heap.push_back({s->rank, pos});
      std::push_heap(heap.begin(), heap.end(), std::greater<>());
    }
  };
  for (int32_t i = 0; i + 1 < n; ++i) push_pair(i);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), std::greater<>());
    const Candidate c = heap.back();
    heap.pop_back();
    Symbol& left = sym[c.pos];
    if (left.id < 0 || left.next < 0) continue;  // stale: merged away since it was pushed
    const MergeSlot* s = find_merge(left.id, sym[left.next].id);
    if (s == nullptr || s->rank != c.rank) continue;  // stale: the pair here changed
    Symbol& right = sym[left.next];
    left.id = s->merged;
    right.id = -1;
    left.next = right.next;
    if (left.next >= 0) sym[left.next].prev = c.pos;
    if (left.prev >= 0) push_pair(left.prev);
    push_pair(c.pos);
  }
  for (int32_t i = 0; i >= 0; i = sym[i].next) out.push_back(sym[i].id);
}

void Gpt2BpeTokenizer::bpe_piece_reference(std::string_view piece, std::vector<int32_t>& out) const {
  thread_local std::vector<int32_t> word;  // scratch; never escapes this call
  word.clear();
  for (unsigned char b : piece) word.push_back(byte_id_[b]);

  // GPT-2's loop: find the adjacent pair with the best (lowest) rank, merge every occurrence
  // of it left to right, repeat until no adjacent pair is a known merge.
  while (word.size() >= 2) {
    const MergeSlot* best = nullptr;
    for (size_t k = 0; k + 1 < word.size(); ++k) {
      const MergeSlot* s = find_merge(word[k], word[k + 1]);
      if (s != nullptr && (best == nullptr || s->rank < best->rank)) best = s;
    }
    if (best == nullptr) break;
    const auto left = static_cast<int32_t>(best->key >> 32);
    const auto right = static_cast<int32_t>(best->key & 0xFFFFFFFFu);
    size_t w = 0;
    for (size_t k = 0; k < word.size();) {
      if (k + 1 < word.size() && word[k] == left && word[k + 1] == right) {
        word[w++] = best->merged;
        k += 2;
      } else {
        word[w++] = word[k++];
      }
    }
    word.resize(w);
  }
  out.insert(out.end(), word.begin(), word.end());
}

void Gpt2BpeTokenizer::encode_piece_cached(std::string_view piece, std::vector<int32_t>& out) const {
  if (piece.size() == 1) {
    out.push_back(byte_id_[static_cast<unsigned char>(piece[0])]);
    return;
  }
  if (piece.size() > kSlotKeyBytes) {
    bpe_piece(piece, out);
    return;
  }
  const uint64_t hash = hash_piece(piece);
  CacheShard& shard = cache_[hash >> 58];  // top 6 bits: 64 shards
  const size_t mask = kSlotsPerShard - 1;
  {
    std::lock_guard<std::mutex> lock(shard.mu);
    if (!shard.slots.empty()) {
      for (size_t i = hash & mask;; i = (i + 1) & mask) {
        const CacheSlot& s = shard.slots[i];
        if (s.hash == 0) break;
        if (s.hash == hash && s.key_len == piece.size() && std::memcmp(s.key, piece.data(), piece.size()) == 0) {
          out.insert(out.end(), s.ids, s.ids + s.n_ids);
          return;
        }
      }
    }
  }
  const size_t start = out.size();
  bpe_piece(piece, out);  // outside the lock: other threads keep going
  const size_t n_ids = out.size() - start;
  if (n_ids > kSlotIds) return;

  std::lock_guard<std::mutex> lock(shard.mu);
  if (shard.slots.empty()) shard.slots.assign(kSlotsPerShard, CacheSlot{});
  if (2 * (shard.used + 1) > kSlotsPerShard) {  // half full: start over (bounds memory on huge corpora)
    std::fill(shard.slots.begin(), shard.slots.end(), CacheSlot{});
    shard.used = 0;
  }
  for (size_t i = hash & mask;; i = (i + 1) & mask) {
    CacheSlot& s = shard.slots[i];
    if (s.hash == hash && s.key_len == piece.size() && std::memcmp(s.key, piece.data(), piece.size()) == 0)
      return;  // another thread inserted it meanwhile
    if (s.hash == 0) {
      s.hash = hash;
      s.key_len = static_cast<uint8_t>(piece.size());
      s.n_ids = static_cast<uint8_t>(n_ids);
      std::memcpy(s.key, piece.data(), piece.size());
      std::copy(out.begin() + static_cast<std::ptrdiff_t>(start), out.end(), s.ids);
      ++shard.used;
      return;
    }
  }
}

void Gpt2BpeTokenizer::encode(std::string_view text, std::vector<int32_t>& out) const {
  gpt2_split(text, [&](std::string_view piece) { encode_piece_cached(piece, out); });
}

std::vector<int32_t> Gpt2BpeTokenizer::encode(std::string_view text) const {
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 1);
  encode(text, ids);
  return ids;
}

void Gpt2BpeTokenizer::decode(const int32_t* ids, size_t n, std::string& out) const {
  size_t total = 0;
  for (size_t i = 0; i < n; ++i) {
    MH_CHECK(ids[i] >= 0 && ids[i] < vocab_size(), MH_ERR_INVALID_ARG, "gpt2-bpe: cannot decode id ", ids[i],
             " at position ", i, ": outside the vocabulary 0..", vocab_size() - 1,
             " HINT: ids must come from this tokenizer (vocab_size ", vocab_size(), ")");
    total += token_bytes_[ids[i]].size();
  }
  out.reserve(out.size() + total);
  for (size_t i = 0; i < n; ++i) out.append(token_bytes_[ids[i]]);
}

std::string Gpt2BpeTokenizer::decode(const std::vector<int32_t>& ids) const {
  std::string out;
  decode(ids.data(), ids.size(), out);
  return out;
}

}  // namespace megahost::tokenizers
