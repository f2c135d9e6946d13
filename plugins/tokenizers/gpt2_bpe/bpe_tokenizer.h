// GPT-2 byte-level BPE (Megatron's GPT2BPETokenizer) as a plain C++ class.
//
// encode: text -> GPT-2 pre-tokenizer pieces -> each piece's UTF-8 bytes -> BPE merges by rank
// -> ids. decode: ids -> the bytes each id stands for, concatenated. Byte-level, so any byte
// string round-trips: decode(encode(x)) == x.
//
// Files (Megatron's --vocab-file / --merge-file):
//   vocab_file  encoder.json: {"token": id, ...}; tokens are written in GPT-2's byte->unicode
//               alphabet (a space is "Ġ"), "<|endoftext|>" is the end-of-document token.
//   merge_file  vocab.bpe: "#version: ..." then one merge "left right" per line, best first.
//
// One instance is shared by preprocessing workers: every const method is [thread-safe].
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "megahost/sdk/error.h"

namespace megahost::tokenizers {

// A load error that knows which recipe key's file is at fault, so the plugin can also point
// at the recipe line. what() is "<message> HINT: <hint>".
class BpeLoadError : public sdk::Error {
 public:
  BpeLoadError(mh_status_code code, std::string key, const std::string& message, std::string hint)
      : sdk::Error(code, message + " HINT: " + hint), key_(std::move(key)), message_(message), hint_(std::move(hint)) {}
  const std::string& key() const { return key_; }  // "vocab_file" or "merge_file"
  const std::string& message() const { return message_; }
  const std::string& hint() const { return hint_; }

 private:
  std::string key_, message_, hint_;
};

class Gpt2BpeTokenizer {
 public:
  // Loads both files; throws BpeLoadError naming the file (and line) on any problem.
  Gpt2BpeTokenizer(const std::string& vocab_file, const std::string& merge_file);
  ~Gpt2BpeTokenizer();
  Gpt2BpeTokenizer(const Gpt2BpeTokenizer&) = delete;
  Gpt2BpeTokenizer& operator=(const Gpt2BpeTokenizer&) = delete;

  // Appends the ids of `text` (any bytes) to out. [thread-safe]
  void encode(std::string_view text, std::vector<int32_t>& out) const;
  std::vector<int32_t> encode(std::string_view text) const;

  // Appends the bytes of ids[0..n) to out; throws sdk::Error(MH_ERR_INVALID_ARG) on an id
  // outside the vocabulary (out is then unchanged). [thread-safe]
  void decode(const int32_t* ids, size_t n, std::string& out) const;
  std::string decode(const std::vector<int32_t>& ids) const;

  int64_t vocab_size() const { return static_cast<int64_t>(token_bytes_.size()); }
  // "<|endoftext|>" (50256 in GPT-2), when the vocabulary has it.
  std::optional<int32_t> eod_id() const { return eod_id_; }
  size_t num_merges() const { return num_merges_; }

  // BPE of one pre-tokenized piece, without the cache; appends its ids. [thread-safe]
  void bpe_piece(std::string_view piece, std::vector<int32_t>& out) const;
  // GPT-2's own loop (find the best pair, merge all its occurrences, repeat): O(n^2) in the
  // piece length. bpe_piece uses it for short pieces and a heap, O(n log n), for long ones;
  // both give the same ids when the merges are in creation order (checked at load, true for
  // GPT-2). Public so tests can compare the two. [thread-safe]
  void bpe_piece_reference(std::string_view piece, std::vector<int32_t>& out) const;
  // True when every merge comes after the merges that create its two parts.
  bool merges_in_creation_order() const { return merges_in_creation_order_; }

 private:
  // Rank table: (left id, right id) -> (rank, merged id), open addressing on a hashed pair.
  struct MergeSlot {
    uint64_t key;  // (left << 32) | right; kEmptyKey when unused
    int32_t rank;
    int32_t merged;
  };
  static constexpr uint64_t kEmptyKey = ~uint64_t{0};
  void add_merge(int32_t left, int32_t right, int32_t rank, int32_t merged);
  const MergeSlot* find_merge(int32_t left, int32_t right) const;
  void bpe_piece_heap(std::string_view piece, std::vector<int32_t>& out) const;
  static constexpr size_t kHeapMinPieceBytes = 64;  // shorter pieces: GPT-2's loop is faster

  void load_vocab(const std::string& path, std::unordered_map<std::string, int32_t>& bytes_to_id);
  void load_merges(const std::string& path, const std::unordered_map<std::string, int32_t>& bytes_to_id);

  // Per-piece cache: 64 shards, each a flat open-addressing table behind its own mutex, so
  // worker threads rarely wait on each other. One slot is one cache line holding the piece and
  // its ids, so a hit costs one memory access. Pieces longer than kSlotKeyBytes or with more
  // than kSlotIds ids are not cached (rare; BPE runs directly).
  static constexpr size_t kSlotKeyBytes = 22;
  static constexpr size_t kSlotIds = 8;
  struct alignas(64) CacheSlot {
    uint64_t hash;  // 0 = empty
    uint8_t key_len;
    uint8_t n_ids;
    char key[kSlotKeyBytes];
    int32_t ids[kSlotIds];
  };
  static_assert(sizeof(CacheSlot) == 64, "one cache line per slot");
  struct CacheShard {
    std::mutex mu;
    std::vector<CacheSlot> slots;  // allocated on first insert; kSlotsPerShard entries
    size_t used = 0;
  };
  static constexpr size_t kCacheShards = 64;
  static constexpr size_t kSlotsPerShard = 4096;  // at most half used: 131k pieces, 16 MiB in all
  void encode_piece_cached(std::string_view piece, std::vector<int32_t>& out) const;

  std::vector<std::string> token_bytes_;  // id -> the bytes it stands for
  std::array<int32_t, 256> byte_id_{};    // byte -> id of the single-byte token
  std::vector<MergeSlot> merges_;         // size is a power of two
  uint64_t merge_mask_ = 0;
  size_t num_merges_ = 0;
  bool merges_in_creation_order_ = false;
  std::optional<int32_t> eod_id_;
  mutable std::unique_ptr<CacheShard[]> cache_;
};

// GPT-2's reversible byte <-> printable-character map: bytes 33..126, 161..172 and 174..255
// stand for themselves, the other 68 bytes for U+0100.. in order (so a space is U+0120 "Ġ").
uint32_t gpt2_byte_to_unicode(uint8_t b);
// Inverse; -1 when the code point is not in the map.
int gpt2_unicode_to_byte(uint32_t cp);

}  // namespace megahost::tokenizers
