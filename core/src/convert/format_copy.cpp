// megahost -> megahost in another format plugin: every entry read through one plugin and written
// through the other; the core's own blobs (meta.json, shards.json) travel with them, so the
// result is layout-free wherever the source was.
#include "megahost/core/convert/format_copy.h"

#include <ATen/ATen.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "megahost/core/engine/checkpoint_inspect.h"
#include "megahost/core/engine/checkpointing.h"
#include "megahost/core/error.h"
#include "megahost/core/files.h"

namespace megahost::core {

namespace fs = std::filesystem;

namespace {

// meta.json names the format that wrote the folder (`ckpt verify` opens it with that plugin).
std::string retarget_meta(const std::string& text, const std::string& to, const std::string& where) {
  nlohmann::json meta;
  try {
    meta = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw Error(cat(where, ": meta.json is not JSON (", e.what(), ")\nHINT: the checkpoint is damaged"));
  }
  meta["checkpoint_plugin"] = to;
  return meta.dump(2);
}

// Copies one folder's entries; returns (tensors, bytes).
std::pair<int64_t, uint64_t> copy_folder(CheckpointFormat& from, const std::string& src, CheckpointFormat& to,
                                         const std::string& dst) {
  auto reader = from.open_reader(src);
  auto writer = to.open_writer(dst);
  int64_t tensors = 0;
  uint64_t bytes = 0;
  for (const CheckpointEntry& e : reader->list()) {
    bytes += e.nbytes;
    if (e.is_blob) {
      const std::string b = reader->blob(e.name);
      writer->blob(e.name, e.name == "meta.json" ? retarget_meta(b, to.id(), src) : b);
      continue;
    }
    at::Tensor t = at::empty(e.shape, at::TensorOptions().dtype(e.dtype));  // one tensor at a time
    reader->tensor_into(e.name, t);
    writer->tensor(e.name, t);
    ++tensors;
  }
  writer->commit();
  return {tensors, bytes};
}

}  // namespace

std::string convert_checkpoint_format(const PluginRegistry& reg, const std::string& mh_dir, const std::string& from,
                                      const std::string& out_dir, const std::string& to) {
  auto src_fmt = create_checkpoint_format(reg, from, ConfigSection{});
  auto dst_fmt = create_checkpoint_format(reg, to, ConfigSection{});
  MH_CORE_CHECK(src_fmt->id() != dst_fmt->id(), "--loader and --saver are both the format '", src_fmt->id(),
                "'\nHINT: a megahost checkpoint needs no conversion to change layout: any TP / PP / DP layout "
                "loads it (the load reshards)");
  const std::string iter_dir = resolve_checkpoint_dir(mh_dir);
  const std::string why = incomplete_reason(*src_fmt, iter_dir);
  MH_CORE_CHECK(why.empty(), iter_dir, " is not a complete '", src_fmt->id(), "' checkpoint: ", why,
                "\nHINT: --loader names the format plugin that wrote it (meta.json's checkpoint_plugin)");
  // The iteration from meta.json: an iter_* folder given directly may sit anywhere.
  const std::vector<std::string> folders = checkpoint_rank_folders(iter_dir);
  const auto meta = nlohmann::json::parse(src_fmt->open_reader(folders.front())->blob("meta.json"));
  const int64_t iteration = meta.value("iteration", int64_t{0});
  fs::create_directories(out_dir);
  const fs::path final_dir = iteration_dir(out_dir, iteration);
  MH_CORE_CHECK(!fs::exists(final_dir), final_dir.string(), ": already exists\nHINT: convert into an empty folder");
  clean_interrupted_saves(out_dir);
  const fs::path staging = final_dir.string() + ".tmp";  // published by a rename, as a save is
  remove_tree(staging);
  int64_t tensors = 0;
  uint64_t bytes = 0;
  const bool many = folders.size() > 1 || folders.front() != iter_dir;
  for (const std::string& f : folders) {
    const fs::path dst = many ? staging / fs::path(f).filename() : staging;
    const auto [n, b] = copy_folder(*src_fmt, f, *dst_fmt, dst.string());
    tensors += n;
    bytes += b;
  }
  fs::rename(staging, final_dir);
  {
    const fs::path tracker = fs::path(out_dir) / "latest_checkpointed_iteration.txt";
    std::ofstream(tracker.string() + ".tmp") << iteration << "\n";
    fs::rename(tracker.string() + ".tmp", tracker);
  }
  return cat("converted ", iter_dir, " (format '", src_fmt->id(), "') to ", final_dir.string(), " (format '",
             dst_fmt->id(), "'): ", folders.size(), " folder(s), ", tensors, " tensors, ",
             static_cast<double>(bytes) / 1e6, " MB");
}

}  // namespace megahost::core
