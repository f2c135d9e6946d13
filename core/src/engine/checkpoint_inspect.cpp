// Checkpoint inspection and verification over a checkpoint format plugin.
#include "megahost/core/engine/checkpoint_inspect.h"

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "megahost/core/engine/checkpoint_reshard.h"
#include "megahost/core/engine/checkpointing.h"
#include "megahost/core/error.h"

namespace megahost::core {

namespace fs = std::filesystem;

std::string resolve_checkpoint_dir(const std::string& dir) {
  MH_CORE_CHECK(fs::is_directory(dir), dir, ": not a folder\nHINT: give a save folder or one of its iter_* folders");
  if (auto latest = latest_checkpoint(dir)) {
    const std::string iter = iteration_dir(dir, *latest);
    MH_CORE_CHECK(fs::is_directory(iter), iter, ": missing, but the tracker file names iteration ", *latest,
                  "\nHINT: point latest_checkpointed_iteration.txt at an existing iter_* folder");
    return iter;
  }
  const std::string name = fs::path(dir).lexically_normal().filename().string();
  const bool is_iter = name.rfind("iter_", 0) == 0 || fs::is_directory(fs::path(dir) / "rank_00000");
  MH_CORE_CHECK(is_iter, dir, ": neither a save folder (no latest_checkpointed_iteration.txt) nor an iter_* folder",
                "\nHINT: give the folder of checkpoint.save or one of its iter_* folders");
  return dir;
}

std::vector<std::string> checkpoint_rank_folders(const std::string& iter_dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(iter_dir)) {
    const std::string name = e.path().filename().string();
    if (e.is_directory() && name.rfind("rank_", 0) == 0) out.push_back(e.path().string());
  }
  std::sort(out.begin(), out.end());
  if (out.empty()) out.push_back(iter_dir);  // saved by one process
  return out;
}

std::vector<InspectedFolder> inspect_checkpoint(CheckpointFormat& fmt, const std::string& iter_dir) {
  std::vector<InspectedFolder> out;
  for (const std::string& folder : checkpoint_rank_folders(iter_dir)) {
    InspectedFolder f;
    f.path = folder;
    auto reader = fmt.open_reader(folder);
    f.entries = reader->list();
    for (const auto& e : f.entries)
      if (e.is_blob && e.name == "meta.json") f.meta_json = reader->blob("meta.json");
      else if (e.is_blob && e.name == kShardsBlob) f.shards_json = reader->blob(kShardsBlob);
    out.push_back(std::move(f));
  }
  return out;
}

std::vector<CheckpointProblem> verify_checkpoint(CheckpointFormat& fmt, const std::string& iter_dir) {
  std::vector<CheckpointProblem> problems;
  const auto folders = checkpoint_rank_folders(iter_dir);
  for (const std::string& folder : folders) {
    std::unique_ptr<CheckpointFormat::Reader> reader;
    std::vector<CheckpointEntry> entries;
    try {
      reader = fmt.open_reader(folder);
      entries = reader->list();
    } catch (const std::exception& e) {
      problems.push_back({folder, "", e.what()});
      continue;
    }
    bool has_meta = false;
    for (const CheckpointEntry& e : entries) {
      try {
        if (e.is_blob) {
          const std::string bytes = reader->blob(e.name);
          if (e.name == "meta.json") {
            has_meta = true;
            const auto meta = nlohmann::json::parse(bytes);
            // Several processes: every rank folder the save promised must be there.
            const int world = meta.value("world_size", 1);
            if (folder == folders.front() && world > 1 && folders.size() != static_cast<size_t>(world))
              problems.push_back({iter_dir, "", cat("meta.json says ", world, " ranks saved it but ", folders.size(),
                                                    " rank folder(s) exist")});
          }
        } else {
          at::Tensor t = at::empty(e.shape, at::TensorOptions().dtype(e.dtype));
          reader->tensor_into(e.name, t);
        }
      } catch (const std::exception& ex) {
        problems.push_back({folder, e.name, ex.what()});
      }
    }
    if (!has_meta) problems.push_back({folder, "meta.json", "missing"});
  }
  // The layout-free records: every global tensor fully covered by the folders' pieces.
  try {
    ShardedCheckpoint ck(fmt, iter_dir);
    if (ck.layout_free())
      for (const std::string& entry : ck.entries())
        if (std::string why = ck.coverage_problem(entry); !why.empty()) problems.push_back({iter_dir, entry, why});
  } catch (const std::exception& e) {
    if (problems.empty()) problems.push_back({iter_dir, kShardsBlob, e.what()});
  }
  return problems;
}

}  // namespace megahost::core
