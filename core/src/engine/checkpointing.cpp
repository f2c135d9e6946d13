// Checkpoint orchestration over a checkpoint format plugin.
#include "megahost/core/files.h"
#include "megahost/core/engine/checkpointing.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Context.h>
#include <ATen/core/grad_mode.h>  // at::NoGradGuard: not pulled in transitively on libtorch 2.x
#include <ATen/detail/CUDAHooksInterface.h>  // deviceSynchronize without CUDA headers (CPU builds too)
#include <ATen/ops/empty.h>
#include <fcntl.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <nlohmann/json.hpp>
#include <thread>

#include "megahost/core/engine/checkpoint_reshard.h"
#include "megahost/core/error.h"
#include "megahost/core/parallel/world.h"

namespace megahost::core {

namespace fs = std::filesystem;

namespace {

constexpr const char* kTracker = "latest_checkpointed_iteration.txt";

void fsync_path(const fs::path& p) {
  const int fd = ::open(p.c_str(), O_RDONLY);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

// Writes a small file durably and atomically: temp file, fsync, rename, fsync the folder.
void write_file_atomic(const fs::path& path, const std::string& text) {
  const fs::path tmp = path.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    MH_CORE_CHECK(out.good(), tmp.string(), ": cannot write\nHINT: check permissions and free space");
    out << text;
    out.flush();
    MH_CORE_CHECK(out.good(), tmp.string(), ": write failed\nHINT: check free space");
  }
  fsync_path(tmp);
  fs::rename(tmp, path);
  fsync_path(path.parent_path());
}

// Every default generator dropout may draw from: the CPU one and one per visible CUDA device.
std::vector<std::pair<std::string, at::Generator>> default_generators() {
  std::vector<std::pair<std::string, at::Generator>> out;
  out.emplace_back("rng/torch_cpu", at::detail::getDefaultCPUGenerator());
  if (at::hasCUDA()) {
    const int n = static_cast<int>(at::detail::getCUDAHooks().getNumGPUs());
    for (int i = 0; i < n; ++i)
      out.emplace_back(cat("rng/torch_cuda/", i),
                       at::globalContext().defaultGenerator(at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(i))));
  }
  return out;
}

std::string generator_state(at::Generator gen) {
  std::lock_guard<std::mutex> lock(gen.mutex());
  at::Tensor s = gen.get_state();
  return std::string(static_cast<const char*>(s.data_ptr()), s.numel());
}

void set_generator_state(at::Generator gen, const std::string& bytes) {
  at::Tensor s = at::empty({static_cast<int64_t>(bytes.size())}, at::kByte);
  std::memcpy(s.data_ptr(), bytes.data(), bytes.size());
  std::lock_guard<std::mutex> lock(gen.mutex());
  gen.set_state(s);
}

}  // namespace

std::string iteration_dir(const std::string& dir, int64_t iteration) {
  char name[32];
  std::snprintf(name, sizeof(name), "iter_%07lld", static_cast<long long>(iteration));
  return (fs::path(dir) / name).string();
}

namespace {

std::string rank_dir_name(int rank) {
  char name[32];
  std::snprintf(name, sizeof(name), "rank_%05d", rank);
  return name;
}

// This rank's place in the parallel layout (one process, or a test without the runtime: tp = pp = 1).
struct Coords {
  int tp = 1, pp = 1, cp = 1, dp = 1;
  int tp_rank = 0, pp_rank = 0, cp_rank = 0, dp_rank = 0;
};

Coords coords_of(const CheckpointParts& parts) {
  Coords c;
  auto& rt = ParallelRuntime::get();
  if (parts.world_size <= 1 || !rt.initialized()) return c;
  const ParallelSizes& s = rt.sizes();
  c.tp = s.tp;
  c.pp = s.pp;
  c.cp = s.cp;
  c.dp = s.dp();
  c.tp_rank = rt.tp_rank();
  c.pp_rank = rt.pp_rank();
  c.cp_rank = rt.cp_rank();
  c.dp_rank = rt.dp_rank();
  return c;
}

nlohmann::json coords_json(const Coords& c) {
  return {{"tp", c.tp}, {"pp", c.pp}, {"cp", c.cp}, {"dp", c.dp},
          {"tp_rank", c.tp_rank}, {"pp_rank", c.pp_rank}, {"cp_rank", c.cp_rank}, {"dp_rank", c.dp_rank}};
}

// What one rank writes: its parameters (when it is a model source), its optimizer state (sharded,
// or replicated from a model source), its RNG states, meta.json and the recipe.
struct RankState {
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  std::vector<std::pair<std::string, std::string>> blobs;
};

// A CPU copy of t for a snapshot. Device tensors go into pinned (page-locked) host memory with
// an asynchronous copy: the copies queue back to back at full PCIe speed and the caller waits once
// (SnapshotSync); pageable memory would stage every tensor through a bounce buffer.
at::Tensor snapshot_copy(const at::Tensor& t, std::optional<c10::DeviceIndex>& cuda_device) {
  const at::Tensor src = t.detach();
  if (!src.is_cuda()) return src.to(at::kCPU, /*non_blocking=*/false, /*copy=*/true).contiguous();
  at::Tensor host = at::empty(src.sizes(), src.options().device(at::kCPU).pinned_memory(true));  // contiguous
  host.copy_(src, /*non_blocking=*/true);
  cuda_device = src.device().index();
  return host;
}

// Waits for the queued device -> host copies of a snapshot (one synchronize for all of them).
void wait_for_snapshot_copies(const std::optional<c10::DeviceIndex>& cuda_device) {
  if (cuda_device) at::detail::getCUDAHooks().deviceSynchronize(*cuda_device);
}

// snapshot: every tensor copied to fresh CPU memory (async save: training goes on changing the
// live ones); otherwise the live tensors (the writer copies device tensors to the host itself).
RankState collect_rank_state(const CheckpointFormat& fmt, const TrainingState& state, const CheckpointParts& parts,
                             const std::string& recipe_text, bool snapshot) {
  RankState out;
  std::optional<c10::DeviceIndex> cuda_device;  // set once a device tensor was copied
  auto add = [&](const std::string& name, const at::Tensor& t) {
    out.tensors.emplace_back(name, snapshot ? snapshot_copy(t, cuda_device) : t);
  };
  const bool model_source = parts.model_source_rank == parts.rank;
  int64_t num_params = 0;
  std::string model_id;
  if (model_source)
    for (Model* m : parts.chunks) {
      model_id = m->id();
      for (const Param& p : m->params()) {
        add("model/" + p.name, p.data);
        num_params += p.data.numel();
      }
    }
  if (parts.visit_optimizer && (parts.optimizer_sharded || model_source))
    parts.visit_optimizer([&](const std::string& name, at::Tensor t) { add("optimizer/" + name, t); });
  wait_for_snapshot_copies(cuda_device);  // the snapshot is complete before training goes on
  for (const auto& [name, gen] : default_generators()) out.blobs.emplace_back(name, generator_state(gen));
  // shards.json: where each stored tensor lies in its global tensor (any layout can load it).
  const Coords coords = coords_of(parts);
  const RankPlacement placement(parts.chunks, coords.tp_rank, coords.tp, parts.optimizer_flat_shards);
  nlohmann::json shards = {{"format", "megahost-shards"}, {"version", 1}, {"tensors", nlohmann::json::object()}};
  for (const auto& [name, t] : out.tensors)
    if (auto slice = placement.slice_of(name, t.sizes().vec())) shards["tensors"][name] = slice_to_json(*slice);
  out.blobs.emplace_back(kShardsBlob, shards.dump(1));
  nlohmann::json meta = {{"format", "megahost-checkpoint"},
                         {"version", 2},
                         {"checkpoint_plugin", fmt.id()},
                         {"iteration", state.iteration},
                         {"consumed_train_samples", state.consumed_train_samples},
                         {"num_parameters", num_params},
                         {"model_plugin", model_id},
                         {"optimizer_plugin", parts.optimizer_id},
                         {"world_size", parts.world_size},
                         {"rank", parts.rank},
                         {"layout", parts.layout},
                         {"parallel", coords_json(coords)},
                         {"megahost_version", MEGAHOST_VERSION}};
  out.blobs.emplace_back("meta.json", meta.dump(2));
  out.blobs.emplace_back("recipe.toml", recipe_text);
  return out;
}

void write_rank_state(CheckpointFormat& fmt, const fs::path& dir, const RankState& s) {
  auto writer = fmt.open_writer(dir.string());
  for (const auto& [name, t] : s.tensors) writer->tensor(name, t);
  for (const auto& [name, bytes] : s.blobs) writer->blob(name, bytes);
  writer->commit();
}

void barrier_if_many(const CheckpointParts& parts) {
  if (parts.world_size > 1) parts.barrier();
}

fs::path staging_dir(const std::string& save_dir, int64_t iteration) { return iteration_dir(save_dir, iteration) + ".tmp"; }

// One process writes the iteration folder itself (the layout of single-process checkpoints);
// several write one folder each inside it.
fs::path rank_write_dir(const std::string& save_dir, int64_t iteration, const CheckpointParts& parts) {
  const fs::path staging = staging_dir(save_dir, iteration);
  return parts.world_size > 1 ? staging / rank_dir_name(parts.rank) : staging;
}

// Rank 0 clears what interrupted saves left and makes the staging folder; then every rank may write.
void prepare_save(const std::string& save_dir, int64_t iteration, const CheckpointParts& parts) {
  if (parts.rank == 0) {
    fs::create_directories(save_dir);
    clean_interrupted_saves(save_dir);
    remove_tree(staging_dir(save_dir, iteration));
    if (parts.world_size > 1) fs::create_directories(staging_dir(save_dir, iteration));
  }
  barrier_if_many(parts);
}

// Rank 0, once every rank's folder is committed: rename the staging folder into place, then
// point the tracker at it (written last: a kill before leaves the previous checkpoint tracked).
void publish_iteration(const std::string& save_dir, int64_t iteration) {
  const fs::path final_dir = iteration_dir(save_dir, iteration);
  const fs::path staging = staging_dir(save_dir, iteration);
  fsync_path(staging);
  // An older folder of the same iteration is replaced only after the new one is complete; a kill
  // between the two renames leaves iter_N.old, which clean_interrupted_saves puts back.
  if (fs::exists(final_dir)) {
    const fs::path old = final_dir.string() + ".old";
    remove_tree(old);
    fs::rename(final_dir, old);
    fs::rename(staging, final_dir);
    remove_tree(old);
  } else {
    fs::rename(staging, final_dir);
  }
  fsync_path(save_dir);
  write_file_atomic(fs::path(save_dir) / kTracker, std::to_string(iteration) + "\n");
}

// iter_ + 7 digits (+ suffix): the iteration, or -1.
int64_t iteration_of(const std::string& name, const std::string& suffix = "") {
  if (name.size() != 12 + suffix.size() || name.rfind("iter_", 0) != 0 ||
      name.compare(12, std::string::npos, suffix) != 0)
    return -1;
  const std::string digits = name.substr(5, 7);
  if (digits.find_first_not_of("0123456789") != std::string::npos) return -1;
  return std::stoll(digits);
}

// The complete-looking iter_N folders of dir (by name only), newest first.
std::vector<int64_t> iteration_folders(const std::string& dir) {
  std::vector<int64_t> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const int64_t it = iteration_of(e.path().filename().string());
    if (it >= 0 && e.is_directory()) out.push_back(it);
  }
  std::sort(out.rbegin(), out.rend());
  return out;
}

}  // namespace

void clean_interrupted_saves(const std::string& save_dir) {
  std::error_code ec;
  std::vector<fs::path> entries;
  for (const auto& e : fs::directory_iterator(save_dir, ec)) entries.push_back(e.path());
  for (const fs::path& p : entries) {
    const std::string name = p.filename().string();
    if (iteration_of(name, ".tmp") >= 0 || name == std::string(kTracker) + ".tmp") {
      spdlog::warn("{}: removing the leftover of an interrupted save", p.string());
      remove_tree(p);
    } else if (const int64_t it = iteration_of(name, ".old"); it >= 0) {
      const fs::path final_dir = iteration_dir(save_dir, it);
      if (fs::exists(final_dir)) {
        remove_tree(p);
      } else {
        spdlog::warn("{}: a save replacing it was interrupted; putting it back as {}", p.string(), final_dir.string());
        fs::rename(p, final_dir);
        fsync_path(save_dir);
      }
    }
  }
}

std::string incomplete_reason(CheckpointFormat& fmt, const std::string& iter_dir) {
  if (!fs::is_directory(iter_dir)) return "the folder is missing";
  try {
    std::vector<std::string> folders;
    for (const auto& e : fs::directory_iterator(iter_dir)) {
      const std::string name = e.path().filename().string();
      if (e.is_directory() && name.rfind("rank_", 0) == 0) folders.push_back(e.path().string());
    }
    if (folders.empty()) folders.push_back(iter_dir);  // saved by one process
    for (const std::string& folder : folders) {
      auto reader = fmt.open_reader(folder);
      bool has_meta = false;
      for (const CheckpointEntry& e : reader->list()) has_meta = has_meta || (e.is_blob && e.name == "meta.json");
      if (!has_meta) return cat(folder, " has no meta.json");
      const auto meta = nlohmann::json::parse(reader->blob("meta.json"));
      const int world = meta.value("world_size", 1);
      const size_t expected = world > 1 ? static_cast<size_t>(world) : 1;
      if (folders.size() != expected)
        return cat("meta.json says ", world, " rank(s) saved it but ", folders.size(), " folder(s) exist");
    }
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

std::optional<int64_t> find_resume_checkpoint(CheckpointFormat& fmt, const std::string& dir, bool log) {
  std::vector<std::string> skipped;  // "what: why"
  // A tracker that does not parse was not written by a save (those replace it atomically): a
  // person or tool wrote it, so it is an error, not something to skip.
  const std::optional<int64_t> tracked = latest_checkpoint(dir);
  if (!tracked) skipped.push_back(cat((fs::path(dir) / kTracker).string(), ": missing"));
  if (tracked) {
    const std::string why = incomplete_reason(fmt, iteration_dir(dir, *tracked));
    if (why.empty()) return tracked;
    skipped.push_back(cat(iteration_dir(dir, *tracked), " (named by the tracker): ", why));
  }
  const std::vector<int64_t> iters = iteration_folders(dir);
  if (iters.empty() && !tracked) return std::nullopt;  // nothing saved yet: start fresh
  for (int64_t it : iters) {
    if (tracked && it == *tracked) continue;
    const std::string why = incomplete_reason(fmt, iteration_dir(dir, it));
    if (why.empty()) {
      if (log)
        for (const std::string& s : skipped) spdlog::warn("resume: skipped {}", s);
      if (log) spdlog::warn("resume: using {}, the newest complete checkpoint", iteration_dir(dir, it));
      return it;
    }
    skipped.push_back(cat(iteration_dir(dir, it), ": ", why));
  }
  std::string all;
  for (const std::string& s : skipped) all += "\n  " + s;
  throw Error(cat(dir, ": no complete checkpoint to resume from:", all,
                  "\nHINT: restore a checkpoint folder, or set checkpoint.load to another folder (or remove it to "
                  "start afresh)"));
}

void save_checkpoint(CheckpointFormat& fmt, const std::string& save_dir, const TrainingState& state,
                     const CheckpointParts& parts, const std::string& recipe_text, int64_t keep_last_n) {
  prepare_save(save_dir, state.iteration, parts);
  write_rank_state(fmt, rank_write_dir(save_dir, state.iteration, parts),
                   collect_rank_state(fmt, state, parts, recipe_text, /*snapshot=*/false));
  barrier_if_many(parts);  // every rank's folder is committed before the iteration is published
  if (parts.rank == 0) publish_iteration(save_dir, state.iteration);
  barrier_if_many(parts);  // nobody trains on (or loads) before the tracker names this iteration
  // Pruning after publication: a kill in between leaves extra folders, never too few.
  if (parts.rank == 0 && keep_last_n > 0) prune_checkpoints(save_dir, keep_last_n);
}

struct AsyncCheckpointSaver::Pending {
  std::string save_dir;
  int64_t iteration = 0, keep_last_n = 0;
  CheckpointParts parts;
  std::thread thread;
  std::atomic<bool> done{false};
  std::string error;  // the background write's failure ("" = none); read after join
  std::chrono::steady_clock::time_point started;
};

AsyncCheckpointSaver::AsyncCheckpointSaver() = default;

AsyncCheckpointSaver::~AsyncCheckpointSaver() {
  if (pending_ && pending_->thread.joinable()) pending_->thread.join();
}

bool AsyncCheckpointSaver::in_flight() const { return pending_ != nullptr; }

void AsyncCheckpointSaver::save(CheckpointFormat& fmt, const std::string& save_dir, const TrainingState& state,
                                const CheckpointParts& parts, const std::string& recipe_text, int64_t keep_last_n) {
  using Clock = std::chrono::steady_clock;
  const auto t0 = Clock::now();
  finish();  // one save at a time: the previous one is published (or has failed) first
  const auto t1 = Clock::now();
  prepare_save(save_dir, state.iteration, parts);
  auto p = std::make_unique<Pending>();
  p->save_dir = save_dir;
  p->iteration = state.iteration;
  p->keep_last_n = keep_last_n;
  p->parts = parts;
  p->started = Clock::now();
  // The only part the training step waits for: the copy of the state off the device.
  auto rank_state = std::make_shared<RankState>(collect_rank_state(fmt, state, parts, recipe_text, /*snapshot=*/true));
  const fs::path dir = rank_write_dir(save_dir, state.iteration, parts);
  Pending* raw = p.get();
  p->thread = std::thread([&fmt, dir, rank_state, raw] {
    try {
      write_rank_state(fmt, dir, *rank_state);
    } catch (const std::exception& e) {
      raw->error = e.what();
    } catch (...) {
      raw->error = "unknown error";
    }
    raw->done.store(true);
  });
  pending_ = std::move(p);
  spdlog::info("checkpoint at iteration {}: waited {:.2f} s for the previous save, copied the state in {:.2f} s; "
               "writing {} in the background", state.iteration, std::chrono::duration<double>(t1 - t0).count(),
               std::chrono::duration<double>(Clock::now() - t1).count(), iteration_dir(save_dir, state.iteration));
}

void AsyncCheckpointSaver::poll() {
  if (!pending_) return;
  bool all_done = pending_->done.load();
  // Every rank must reach the same answer at the same call: ask all of them.
  if (pending_->parts.world_size > 1) all_done = !pending_->parts.any_rank(!all_done);
  if (all_done) publish();
}

void AsyncCheckpointSaver::finish() {
  if (!pending_) return;
  pending_->thread.join();
  barrier_if_many(pending_->parts);  // every rank's write finished (or failed)
  publish();
}

void AsyncCheckpointSaver::publish() {
  std::unique_ptr<Pending> p = std::move(pending_);
  if (p->thread.joinable()) p->thread.join();
  const CheckpointParts& parts = p->parts;
  const bool failed_here = !p->error.empty();
  const bool failed = parts.world_size > 1 ? parts.any_rank(failed_here) : failed_here;
  const std::string final_dir = iteration_dir(p->save_dir, p->iteration);
  if (failed)
    throw Error(cat(final_dir, ": the asynchronous save of iteration ", p->iteration, " failed",
                    failed_here ? cat(" on rank ", parts.rank, ": ", p->error) : std::string(" on another rank"),
                    "\nHINT: check free space and permissions of checkpoint.save; the checkpoint the tracker names is "
                    "intact (resume from it)"));
  if (parts.rank == 0) {
    publish_iteration(p->save_dir, p->iteration);
    if (p->keep_last_n > 0) prune_checkpoints(p->save_dir, p->keep_last_n);
    spdlog::info("saved checkpoint at iteration {} to {} (written in the background, published {:.2f} s after the "
                 "copy began)",
                 p->iteration, final_dir,
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - p->started).count());
  }
}

void prune_checkpoints(const std::string& save_dir, int64_t keep_last_n, std::optional<int64_t> also_keep) {
  const auto tracked = latest_checkpoint(save_dir);
  std::vector<std::pair<int64_t, fs::path>> iters;  // only complete folders: iter_ + 7 digits
  for (const auto& e : fs::directory_iterator(save_dir)) {
    const std::string name = e.path().filename().string();
    if (!e.is_directory() || name.size() != 12 || name.rfind("iter_", 0) != 0 ||
        name.find_first_not_of("0123456789", 5) != std::string::npos)
      continue;
    iters.emplace_back(std::stoll(name.substr(5)), e.path());
  }
  std::sort(iters.begin(), iters.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  for (size_t i = static_cast<size_t>(keep_last_n); i < iters.size(); ++i)
    if ((!tracked || iters[i].first != *tracked) && (!also_keep || iters[i].first != *also_keep))
      remove_tree(iters[i].second);
}

std::optional<int64_t> latest_checkpoint(const std::string& dir) {
  const fs::path tracker = fs::path(dir) / kTracker;
  std::ifstream in(tracker);
  if (!in.good()) return std::nullopt;
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ' || text.back() == '\r')) text.pop_back();
  char* end = nullptr;
  const long long it = std::strtoll(text.c_str(), &end, 10);
  MH_CORE_CHECK(!text.empty() && end != nullptr && *end == '\0' && it >= 0, tracker.string(),
                ": corrupt tracker file (content '", text.substr(0, 40),
                "')\nHINT: it must hold the iteration number of the latest complete checkpoint; fix it by hand to one "
                "of the iter_* folders");
  return it;
}

namespace {

nlohmann::json read_meta(CheckpointFormat::Reader& reader, const std::string& path) {
  try {
    return nlohmann::json::parse(reader.blob("meta.json"));
  } catch (const nlohmann::json::exception& e) {
    throw Error(cat(path, ": meta.json is not valid JSON (", e.what(), ")\nHINT: load an older checkpoint"));
  }
}

std::map<std::string, CheckpointEntry> entries_of(CheckpointFormat::Reader& reader) {
  std::map<std::string, CheckpointEntry> entries;
  for (auto& e : reader.list()) entries[e.name] = e;
  return entries;
}

// The rank folder of the saved layout at this rank's tp/pp/cp/dp coordinates, or -1.
int folder_at(const ShardedCheckpoint& ck, const Coords& c) {
  for (size_t f = 0; f < ck.folders().size(); ++f) {
    const nlohmann::json par = ck.meta(f).value("parallel", nlohmann::json::object());
    if (par.value("tp_rank", 0) == c.tp_rank && par.value("pp_rank", 0) == c.pp_rank &&
        par.value("cp_rank", 0) == c.cp_rank && par.value("dp_rank", 0) == c.dp_rank)
      return static_cast<int>(f);
  }
  return -1;
}

// Loading under another layout than the one that saved: every tensor this rank holds is cut
// out of its global tensor, assembled from the saved rank folders one tensor at a time.
TrainingState load_resharded(CheckpointFormat& fmt, const std::string& iter_path, const CheckpointParts& parts,
                             const LoadOptions& opts) {
  ShardedCheckpoint ck(fmt, iter_path);
  const nlohmann::json& meta = ck.meta(0);
  const std::string saved = cat("'", meta.value("layout", std::string("?")), "' (", ck.folders().size(), " folder(s))");
  MH_CORE_CHECK(ck.layout_free(), iter_path, ": saved with parallel layout ", saved, ", this run is '", parts.layout,
                "' (", parts.world_size, " process(es)), and ", ck.why_not_layout_free(),
                "\nHINT: resume with the parallel layout that saved it");
  const Coords c = coords_of(parts);
  if (parts.rank == 0)
    spdlog::info("{}: saved with layout {}, loading as '{}': resharding every tensor", iter_path, saved,
                 parts.layout.empty() ? std::string("one process") : parts.layout);
  const RankPlacement here(parts.chunks, c.tp_rank, c.tp, parts.optimizer_flat_shards);
  auto load_entry = [&](const std::string& entry, at::Tensor dst, const char* hint) {
    const auto target = here.slice_of(entry, dst.sizes().vec());
    MH_CORE_CHECK(target.has_value(), iter_path, ": '", entry, "' (shape ", dst.sizes(),
                  ") has no known place in its global tensor\nHINT: ", hint);
    MH_CORE_CHECK(ck.has(entry), iter_path, ": no rank folder holds '", entry, "'\nHINT: ", hint);
    // Same global shape (the usual case): read only the pieces overlapping this rank's slice.
    const bool same_shape = ck.pieces(entry).front().slice.global_shape == target->global_shape;
    at::Tensor global = same_shape ? ck.read_region(entry, *target) : ck.read_global(entry);
    if (!same_shape) {
      bool rows_only = is_vocab_tensor(entry) && global.dim() == static_cast<int64_t>(target->global_shape.size());
      for (int64_t d = 1; rows_only && d < global.dim(); ++d) rows_only = global.size(d) == target->global_shape[d];
      MH_CORE_CHECK(rows_only, iter_path, ": '", entry, "' has global shape ", global.sizes(),
                    " in the checkpoint but ", at::IntArrayRef(target->global_shape),
                    " in this run\nHINT: the model configuration differs from the one that saved this checkpoint");
      if (parts.rank == 0)
        spdlog::warn("{}: '{}' has {} rows (padded vocabulary) in the checkpoint and {} in this layout: {}", iter_path,
                     entry, global.size(0), target->global_shape[0],
                     global.size(0) > target->global_shape[0] ? "dropping padding rows" : "appending zero rows");
      global = fit_rows(global, target->global_shape[0]).contiguous();
    }
    at::NoGradGuard no_grad;
    dst.copy_(extract_slice(global, *target).reshape(dst.sizes()));
  };
  for (Model* m : parts.chunks)
    for (const Param& p : m->params())
      load_entry("model/" + p.name, p.data, "the model configuration differs from the one that saved this checkpoint");
  if (opts.load_optimizer && parts.visit_optimizer)
    parts.visit_optimizer([&](const std::string& n, at::Tensor t) {
      load_entry("optimizer/" + n, t, "set checkpoint.no_load_optim=true to start the optimizer afresh");
    });
  if (opts.load_rng) {
    const int f = folder_at(ck, c);
    if (f >= 0) {
      std::map<std::string, bool> stored;
      for (const CheckpointEntry& e : ck.reader(f).list()) stored[e.name] = e.is_blob;
      for (const auto& [name, gen] : default_generators())
        if (stored.count(name) != 0) set_generator_state(gen, ck.reader(f).blob(name));
    } else {
      // No saved rank had these coordinates: a fresh, deterministic stream per rank and iteration.
      const auto iteration = static_cast<uint64_t>(meta.value("iteration", int64_t{0}));
      const uint64_t seed = 0x9E3779B97F4A7C15ull ^ (iteration * 1000003u + static_cast<uint64_t>(parts.rank));
      for (auto& [name, gen] : default_generators()) {
        std::lock_guard<std::mutex> lock(gen.mutex());
        gen.set_current_seed(seed);
      }
      spdlog::warn("{}: no saved rank has this rank's coordinates (tp {} pp {} cp {} dp {}): its random states are "
                   "reseeded (dropout draws differ from an uninterrupted run)", iter_path, c.tp_rank, c.pp_rank,
                   c.cp_rank, c.dp_rank);
    }
  }
  TrainingState s;
  s.iteration = meta.value("iteration", int64_t{0});
  s.consumed_train_samples = meta.value("consumed_train_samples", int64_t{0});
  return s;
}

}  // namespace

TrainingState load_checkpoint(CheckpointFormat& fmt, const std::string& dir, int64_t iteration,
                              const CheckpointParts& parts, const LoadOptions& opts) {
  const std::string iter_path = iteration_dir(dir, iteration);
  MH_CORE_CHECK(fs::is_directory(iter_path), iter_path, ": checkpoint folder missing (the tracker file names iteration ",
                iteration, ")\nHINT: point the tracker at an existing iter_* folder");
  const bool many = parts.world_size > 1;
  auto folder = [&](int rank) { return many ? (fs::path(iter_path) / rank_dir_name(rank)).string() : iter_path; };
  const bool has_rank_folders = fs::is_directory(fs::path(iter_path) / rank_dir_name(0));
  if (many != has_rank_folders) return load_resharded(fmt, iter_path, parts, opts);
  if (many) {
    auto first = fmt.open_reader(folder(0));
    const nlohmann::json saved = read_meta(*first, folder(0));
    if (saved.value("layout", std::string()) != parts.layout || saved.value("world_size", 1) != parts.world_size)
      return load_resharded(fmt, iter_path, parts, opts);
  }
  MH_CORE_CHECK(many == has_rank_folders, iter_path, ": saved by ", has_rank_folders ? "several processes" : "one process",
                " but this run has ", parts.world_size, " process(es)",
                "\nHINT: resume with the parallel layout that saved it (loading under another layout is "
                "the resharding checkpoint format's job)");

  const std::string own_path = folder(parts.rank);
  MH_CORE_CHECK(fs::is_directory(own_path), own_path, ": missing: the checkpoint was saved by fewer ranks",
                "\nHINT: resume with the parallel layout that saved it");
  auto own = fmt.open_reader(own_path);
  const auto own_entries = entries_of(*own);
  const nlohmann::json meta = read_meta(*own, own_path);
  if (many) {
    const std::string saved = meta.value("layout", std::string());
    MH_CORE_CHECK(saved == parts.layout && meta.value("world_size", 1) == parts.world_size, own_path,
                  ": saved with parallel layout '", saved, "' (", meta.value("world_size", 1),
                  " ranks), this run is '", parts.layout, "' (", parts.world_size,
                  " ranks)\nHINT: resume with the layout that saved it");
  }

  // Parameters (and replicated optimizer state) come from this data-parallel group's first rank.
  std::unique_ptr<CheckpointFormat::Reader> source_reader;
  CheckpointFormat::Reader* src = own.get();
  std::string src_path = own_path;
  std::map<std::string, CheckpointEntry> src_entries = own_entries;
  if (parts.model_source_rank != parts.rank) {
    src_path = folder(parts.model_source_rank);
    source_reader = fmt.open_reader(src_path);
    src = source_reader.get();
    src_entries = entries_of(*src);
  }
  // Same layout string, other stage assignment (interleaving switched on or off): the folder
  // lacks some of this rank's parameters, so a layout-free checkpoint reshards instead.
  bool folder_fits = true;
  for (Model* m : parts.chunks)
    for (const Param& p : m->params()) {
      auto it = src_entries.find("model/" + p.name);
      folder_fits = folder_fits && it != src_entries.end() && it->second.shape == p.data.sizes().vec();
    }
  if (!folder_fits && many && ShardedCheckpoint(fmt, iter_path).layout_free())
    return load_resharded(fmt, iter_path, parts, opts);
  for (Model* m : parts.chunks)
    for (const Param& p : m->params()) {
      const std::string name = "model/" + p.name;
      auto it = src_entries.find(name);
      MH_CORE_CHECK(it != src_entries.end(), src_path, ": checkpoint has no tensor '", name,
                    "'\nHINT: the model configuration differs from the one that saved this checkpoint");
      MH_CORE_CHECK(it->second.shape == p.data.sizes().vec(), src_path, ": '", name, "' has shape ",
                    at::IntArrayRef(it->second.shape), " in the checkpoint but ", p.data.sizes(),
                    " in the model\nHINT: the model configuration differs from the one that saved this checkpoint");
      at::NoGradGuard no_grad;
      src->tensor_into(name, p.data);
    }
  if (opts.load_optimizer && parts.visit_optimizer) {
    CheckpointFormat::Reader* opt_reader = parts.optimizer_sharded ? own.get() : src;
    const auto& opt_entries = parts.optimizer_sharded ? own_entries : src_entries;
    const std::string& opt_path = parts.optimizer_sharded ? own_path : src_path;
    bool warned_cast = false;
    parts.visit_optimizer([&](const std::string& n, at::Tensor t) {
      const std::string name = "optimizer/" + n;
      auto it = opt_entries.find(name);
      MH_CORE_CHECK(it != opt_entries.end(), opt_path, ": checkpoint has no optimizer state '", name,
                    "'\nHINT: set checkpoint.no_load_optim=true to start the optimizer afresh");
      const at::ScalarType saved = it->second.dtype;
      if (saved == t.scalar_type() || !at::isFloatingType(saved) || !at::isFloatingType(t.scalar_type())) {
        opt_reader->tensor_into(name, t);
        return;
      }
      // A moment saved in another precision (e.g. exp_avg_dtype changed between runs): read it as
      // saved, then cast. bf16 -> fp32 is exact; fp32 -> bf16 rounds to nearest.
      at::Tensor as_saved = at::empty(t.sizes(), t.options().dtype(saved).device(at::kCPU));
      opt_reader->tensor_into(name, as_saved);
      at::NoGradGuard no_grad;
      t.copy_(as_saved);
      if (parts.rank == 0 && !warned_cast) {
        spdlog::info("{}: optimizer state saved as {} is loaded into {} state ('{}' and others like it)", opt_path,
                     c10::toString(saved), c10::toString(t.scalar_type()), name);
        warned_cast = true;
      }
    });
  }
  if (opts.load_rng)
    for (const auto& [name, gen] : default_generators())
      if (own_entries.count(name) != 0) set_generator_state(gen, own->blob(name));

  TrainingState s;
  s.iteration = meta.value("iteration", iteration);
  s.consumed_train_samples = meta.value("consumed_train_samples", int64_t{0});
  return s;
}

}  // namespace megahost::core
