// megahost core — the layout-free part of a checkpoint. Every rank folder holds shards.json:
// for each stored tensor, where it lies in its global tensor (global shape, the box of it this
// rank holds, the tensor-parallel GLU halves, the distributed optimizer's flat range). Loading
// under another TP / PP / DP layout assembles each needed global tensor from whichever folders
// hold its pieces (one tensor at a time) and cuts this rank's slice out of it.
#pragma once

#include <ATen/ATen.h>

#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "megahost/core/instances.h"

namespace megahost::core {

constexpr const char* kShardsBlob = "shards.json";

// Where a stored tensor lies in its global tensor.
struct ShardSlice {
  std::vector<int64_t> global_shape;
  std::vector<int64_t> offsets, lengths;  // the box held, per dim (glu_dim: within each half)
  int32_t glu_dim = -1;                   // this dim is two halves (GLU gate, up), each sliced on its own
  int64_t flat_offset = -1, flat_numel = 0;  // distributed optimizer: elements of the box, flattened
  bool flat() const { return flat_offset >= 0; }
  std::vector<int64_t> local_shape() const;  // the stored tensor's shape (1-D when flat)
  bool same_region(const ShardSlice& o) const;
};

nlohmann::json slice_to_json(const ShardSlice& s);
ShardSlice slice_from_json(const nlohmann::json& j, const std::string& where);

// The whole tensor (one process; replicated state such as the optimizer's step).
ShardSlice full_slice(const std::vector<int64_t>& shape);
// TP rank `rank` of `size`'s slice of a parameter of local shape `local` split along `dim`
// (-1: replicated, the whole tensor).
ShardSlice tp_slice(const std::vector<int64_t>& local, int32_t dim, bool glu_halves, int rank, int size);

// The slice's elements of `global` (contiguous; 1-D when flat).
at::Tensor extract_slice(const at::Tensor& global, const ShardSlice& s);
// Writes `piece` (the slice's elements, any shape of that many) into `global` (contiguous).
void place_slice(at::Tensor& global, const ShardSlice& s, const at::Tensor& piece);

// Word embeddings and the output layer (and their optimizer state) have padded_vocab rows, and
// the padding depends on TP: these are the tensors whose dim 0 may be trimmed or zero-padded.
bool is_vocab_tensor(const std::string& entry);
at::Tensor fit_rows(const at::Tensor& t, int64_t rows);

// How this rank's tensors lie in the global ones (what save writes into shards.json, and what a
// resharding load cuts out).
class RankPlacement {
 public:
  // flat_shards: distributed optimizer, per parameter: [offset, numel) of its flattened local
  // tensor that this rank's optimizer state covers.
  RankPlacement(const std::vector<Model*>& chunks, int tp_rank, int tp_size,
                const std::map<std::string, std::pair<int64_t, int64_t>>& flat_shards);
  // The slice of a checkpoint entry ("model/<param>", "optimizer/<param>.<state>",
  // "optimizer/<other>") of stored shape `shape`; nullopt when it cannot be placed (state of
  // unknown shape).
  std::optional<ShardSlice> slice_of(const std::string& entry, const std::vector<int64_t>& shape) const;

 private:
  std::map<std::string, ShardSlice> params_;
  std::map<std::string, std::pair<int64_t, int64_t>> flat_;
};

// An iteration folder saved under any layout, read as global tensors.
class ShardedCheckpoint {
 public:
  struct Piece {
    size_t folder = 0;
    ShardSlice slice;
    at::ScalarType dtype = at::kFloat;
  };
  ShardedCheckpoint(CheckpointFormat& fmt, const std::string& iter_dir);

  // Every rank folder holds shards.json (or the checkpoint was saved by one process, whose
  // tensors are whole): any layout can load it.
  bool layout_free() const { return why_not_layout_free_.empty(); }
  const std::string& why_not_layout_free() const { return why_not_layout_free_; }
  const std::string& iter_dir() const { return iter_dir_; }
  const std::vector<std::string>& folders() const { return folders_; }
  const nlohmann::json& meta(size_t folder) const { return metas_[folder]; }
  CheckpointFormat::Reader& reader(size_t folder) { return *readers_[folder]; }
  bool has(const std::string& entry) const { return pieces_.count(entry) != 0; }
  std::vector<std::string> entries() const;
  const std::vector<Piece>& pieces(const std::string& entry) const;
  // "" when the pieces cover every element of the global tensor (reads no payload).
  std::string coverage_problem(const std::string& entry) const;
  // The global tensor (CPU, stored dtype). Each region is read once, from the lowest folder
  // holding it; throws naming the folder and entry when a read fails (checksum) or a region is missing.
  at::Tensor read_global(const std::string& entry);
  // The same, but only the pieces that overlap `target` (a slice of the same global shape) are
  // read: elsewhere the tensor is left uninitialised. Throws when the pieces miss part of target.
  at::Tensor read_region(const std::string& entry, const ShardSlice& target);

 private:
  std::string iter_dir_, why_not_layout_free_;
  std::vector<std::string> folders_;
  std::vector<nlohmann::json> metas_;
  std::vector<std::unique_ptr<CheckpointFormat::Reader>> readers_;
  std::map<std::string, std::vector<Piece>> pieces_;
};

}  // namespace megahost::core
