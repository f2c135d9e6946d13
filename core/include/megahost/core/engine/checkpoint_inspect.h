// megahost core — reading a checkpoint without training: `megahost ckpt inspect` / `ckpt verify`.
#pragma once

#include <string>
#include <vector>

#include "megahost/core/instances.h"

namespace megahost::core {

// DIR as a user gives it: a save folder (latest_checkpointed_iteration.txt + iter_*) becomes the
// iteration folder its tracker names; an iter_* folder stays itself. Throws with a HINT otherwise.
std::string resolve_checkpoint_dir(const std::string& dir);

// The folders holding entries: iter_N/rank_<5-digit rank> (saved by several processes) or iter_N itself.
std::vector<std::string> checkpoint_rank_folders(const std::string& iter_dir);

struct InspectedFolder {
  std::string path;
  std::string meta_json;  // the folder's meta.json text ("" when unreadable)
  std::string shards_json;  // the folder's shards.json text ("" when absent: saved before the layout-free format)
  std::vector<CheckpointEntry> entries;
};

// Lists every folder's entries and meta.json (reads no tensor payload).
std::vector<InspectedFolder> inspect_checkpoint(CheckpointFormat& fmt, const std::string& iter_dir);

struct CheckpointProblem {
  std::string folder;
  std::string entry;  // "" when the whole folder is at fault
  std::string message;
};

// Reads every tensor and blob of every folder fully (the format checks its checksums) and checks
// that every rank folder meta.json promises exists, and that the rank folders' pieces
// (shards.json) cover every element of every global tensor. Empty = the checkpoint is sound.
std::vector<CheckpointProblem> verify_checkpoint(CheckpointFormat& fmt, const std::string& iter_dir);

}  // namespace megahost::core
