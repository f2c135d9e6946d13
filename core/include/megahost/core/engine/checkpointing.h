// megahost core — checkpoint orchestration: what goes in, where (Megatron's iter_XXXXXXX folders
// and latest_checkpointed_iteration.txt tracker), atomic publish, and resume.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "megahost/core/instances.h"

namespace megahost::core {

struct TrainingState {
  int64_t iteration = 0;
  int64_t consumed_train_samples = 0;
};

using StateVisitor = std::function<void(const std::string& name, at::Tensor t)>;

// What one rank contributes to (and takes from) a checkpoint.
struct CheckpointParts {
  std::vector<Model*> chunks;                       // this rank's model chunks (pipeline stages)
  std::function<void(const StateVisitor&)> visit_optimizer;  // live optimizer state; empty = none
  std::string optimizer_id;
  // Several processes: each rank writes <iter>/rank_%05d. Parameters (and replicated optimizer
  // state) come from the first rank of each data-parallel group only (model_source_rank);
  // sharded optimizer state (distributed optimizer) and RNG states from every rank.
  int rank = 0, world_size = 1;
  int model_source_rank = 0;       // the rank whose folder holds this rank's parameters
  bool optimizer_sharded = false;  // every rank holds its own optimizer state
  std::string layout;              // e.g. "tp2.pp1.cp1.dp2": another one reshards (shards.json)
  // Distributed optimizer: per parameter name, the elements [offset, offset + numel) of its
  // flattened (tensor-parallel local) tensor that this rank's optimizer state covers
  // (DataParallel::optimizer_shards). Without it, sharded optimizer state loads only under the
  // layout that saved it.
  std::map<std::string, std::pair<int64_t, int64_t>> optimizer_flat_shards;
  std::function<void()> barrier;   // over all ranks (needed when world_size > 1)
  std::function<bool(bool)> any_rank;  // true on every rank when true on any (async_save, world_size > 1)
};

// Writes model params, optimizer state, RNG state and metadata into <save>/iter_%07d, published
// atomically (staging folder + rename, after every rank has committed), then updates the
// tracker file atomically. keep_last_n > 0: then removes older iter_* folders beyond the newest
// keep_last_n (never the one the tracker names).
void save_checkpoint(CheckpointFormat& fmt, const std::string& save_dir, const TrainingState& state,
                     const CheckpointParts& parts, const std::string& recipe_text, int64_t keep_last_n = 0);

// Removes iter_* folders of save_dir beyond the newest keep_last_n, never the tracker's one; the
// trainer also runs it at start (a run killed before pruning left one too many).
// also_keep: an iteration never removed either (the one a run resumed from).
void prune_checkpoints(const std::string& save_dir, int64_t keep_last_n,
                       std::optional<int64_t> also_keep = std::nullopt);

// Leftovers of saves a kill interrupted: staging folders iter_N.tmp and tracker .tmp files are
// removed; an iter_N.old (the complete copy a re-save of N was replacing) is put back when
// iter_N is missing, removed otherwise. save_checkpoint runs it on rank 0 before writing.
void clean_interrupted_saves(const std::string& save_dir);

// Why iter_dir is not a complete checkpoint ("" when it is): every rank folder opens with the
// format (its index is committed and its data file has the size the index promises), holds
// meta.json, and as many rank folders exist as meta.json's world_size. Reads no tensor payload.
std::string incomplete_reason(CheckpointFormat& fmt, const std::string& iter_dir);

// The iteration to resume from in dir: the tracker's, when its folder is complete; otherwise
// (tracker missing, or naming a missing or incomplete folder) the newest complete iter_*
// folder, with a warning naming what was skipped and why (when `log`). nullopt when dir has
// neither tracker nor iter_* folders; throws when iter_* folders exist but none is complete, and
// on a tracker that does not parse.
std::optional<int64_t> find_resume_checkpoint(CheckpointFormat& fmt, const std::string& dir, bool log = true);

// Megatron's --async-save. save() waits for the previous save, copies this rank's state off the
// device (CPU tensors: a snapshot) and returns; a background thread writes and commits it.
// Publishing (rename into place + tracker, by rank 0) needs every rank's write finished: poll()
// checks that without blocking (one flag all-reduce per call while a save is in flight, several
// processes), finish() blocks for it. Both run on the main thread, so the collectives never
// overlap training's. A failed write throws from poll()/finish() on every rank, naming the
// folder; the previous checkpoint stays the tracked one.
class AsyncCheckpointSaver {
 public:
  AsyncCheckpointSaver();
  ~AsyncCheckpointSaver();  // joins a write in flight without publishing it
  AsyncCheckpointSaver(const AsyncCheckpointSaver&) = delete;
  AsyncCheckpointSaver& operator=(const AsyncCheckpointSaver&) = delete;

  void save(CheckpointFormat& fmt, const std::string& save_dir, const TrainingState& state,
            const CheckpointParts& parts, const std::string& recipe_text, int64_t keep_last_n = 0);
  void poll();
  void finish();
  bool in_flight() const;

 private:
  struct Pending;
  void publish();
  std::unique_ptr<Pending> pending_;
};

// The latest iteration recorded in <dir>/latest_checkpointed_iteration.txt, or nullopt.
std::optional<int64_t> latest_checkpoint(const std::string& dir);

std::string iteration_dir(const std::string& dir, int64_t iteration);

struct LoadOptions {
  bool load_optimizer = true, load_rng = true;
};

// Loads the given iteration into the live model/optimizer storage. Throws naming the entry.
// Under the layout that saved it, each rank reads its own folders; under another TP / PP / DP
// layout (or number of processes) every needed tensor is assembled from the rank folders' pieces
// (shards.json) and this rank's slice is cut out (vocabulary rows trimmed or zero-padded when the
// padded vocabulary differs; RNG states restored where the tp/pp/cp/dp coordinates exist in the
// saved layout, reseeded deterministically with a warning elsewhere).
TrainingState load_checkpoint(CheckpointFormat& fmt, const std::string& dir, int64_t iteration,
                              const CheckpointParts& parts, const LoadOptions& opts);

}  // namespace megahost::core
