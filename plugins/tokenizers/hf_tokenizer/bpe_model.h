// The "BPE" model of a tokenizer.json: vocab, merges by rank, byte fallback, unk, ignore_merges.
//
// tokenize(piece) follows Hugging Face tokenizers' BPE::merge_word / Word::merge_all:
//   1. ignore_merges and the whole piece is a token: that token (Llama-3).
//   2. one symbol per character (per byte for byte-level models, whose vocabulary is written in
//      GPT-2's byte->unicode alphabet); a character missing from the vocabulary becomes its
//      UTF-8 bytes as <0xXX> tokens (byte_fallback), else unk_token (consecutive unks fused
//      with fuse_unk), else nothing.
//   3. repeatedly merge the adjacent pair with the lowest rank, leftmost first (a heap).
// Results for short pieces are cached in a sharded table: tokenize is [thread-safe].
//
// SentencePiece-style vocabularies (Llama-2) have no pre-tokenizer, so a piece is a whole
// paragraph. When no token has the metaspace U+2581 after another character (checked at load),
// no merge can cross the start of a "▁word": tokenize then runs BPE on each "▁word" alone,
// which gives the same ids and lets the cache work.
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

#include <nlohmann/json_fwd.hpp>

namespace megahost::hf {

class BpeModel {
 public:
  // Parses the "model" object; byte_level says the vocabulary is in GPT-2's byte alphabet.
  // Throws LoadError (load_error.h) on anything malformed or not implemented.
  BpeModel(const nlohmann::json& model, bool byte_level);
  ~BpeModel();
  BpeModel(const BpeModel&) = delete;
  BpeModel& operator=(const BpeModel&) = delete;

  // Appends the ids of one pre-tokenized piece (raw bytes). [thread-safe]
  void tokenize(std::string_view piece, std::vector<int32_t>& out) const;
  // The plain algorithm on the whole piece: no cache, no metaspace split (tests compare the
  // two). [thread-safe]
  void tokenize_uncached(std::string_view piece, std::vector<int32_t>& out) const;
  // True when tokenize splits pieces before each metaspace-led word (see above).
  bool splits_at_metaspace() const { return split_at_metaspace_; }

  std::optional<int32_t> token_to_id(const std::string& token) const;
  // The vocabulary's token string of id ("" when the model has none). [thread-safe]
  const std::string& id_to_token(int32_t id) const;
  int32_t max_id() const { return static_cast<int32_t>(id_to_token_.size()) - 1; }
  size_t num_merges() const { return num_merges_; }
  std::optional<int32_t> unk_id() const { return unk_id_; }
  bool byte_fallback() const { return byte_fallback_; }
  bool byte_level() const { return byte_level_; }

 private:
  struct Merge {  // open-addressing slot: (left, right) -> rank, merged id
    uint64_t key;  // kNoKey when empty
    int32_t rank;
    int32_t merged;
  };
  static constexpr uint64_t kNoKey = ~uint64_t{0};
  const Merge* find_merge(int32_t left, int32_t right) const;
  void initial_symbols(std::string_view piece, std::vector<int32_t>& syms) const;
  void merge_all(std::vector<int32_t>& syms) const;
  void tokenize_cached(std::string_view piece, std::vector<int32_t>& out) const;

  bool byte_level_;
  bool byte_fallback_ = false;
  bool fuse_unk_ = false;
  bool ignore_merges_ = false;
  bool split_at_metaspace_ = false;
  std::optional<int32_t> unk_id_;
  std::unordered_map<std::string, int32_t> vocab_;  // token string (as in the file) -> id
  std::vector<std::string> id_to_token_;            // "" for ids the vocabulary lacks
  std::array<int32_t, 256> byte_token_{};           // byte-level: byte -> id; byte_fallback: <0xXX> -> id; -1 none
  std::unordered_map<uint32_t, int32_t> char_id_;   // not byte-level: single-character tokens
  std::vector<Merge> merges_;                       // power-of-two size
  uint64_t merge_mask_ = 0;
  size_t num_merges_ = 0;

  // Per-piece cache: shards of fixed 64-byte slots (piece <= 22 bytes, <= 8 ids), each shard
  // behind its own mutex; a shard is wiped when half full, which bounds memory.
  static constexpr size_t kKeyBytes = 22, kSlotIds = 8, kShards = 64, kSlotsPerShard = 4096;
  struct alignas(64) Slot {
    uint32_t hash;  // 0 = empty
    uint8_t key_len, n_ids;
    char key[kKeyBytes];
    int32_t ids[kSlotIds];
  };
  static_assert(sizeof(Slot) == 64, "one cache line per slot");
  struct Shard {
    std::mutex mu;
    std::vector<Slot> slots;
    size_t used = 0;
  };
  std::unique_ptr<Shard[]> cache_;
};

// GPT-2's reversible byte <-> printable character map (a space is U+0120 'Ġ').
uint32_t byte_to_unicode(uint8_t b);
int unicode_to_byte(uint32_t cp);  // -1 when cp is not in the map
void append_utf8(uint32_t cp, std::string& out);

}  // namespace megahost::hf
