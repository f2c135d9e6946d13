// Checkpoint orchestration over a checkpoint format plugin.
#include "megahost/core/engine/checkpointing.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Context.h>
#include <ATen/core/grad_mode.h>  // at::NoGradGuard: not pulled in transitively on libtorch 2.x
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>

#include "megahost/core/error.h"

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

// Removes a folder tree without std::filesystem::remove_all: the PyTorch 2.x wheel's libtorch.so
// exports a broken copy of it that wins symbol resolution (docs/architecture.md).
void remove_tree(const fs::path& p) {
  std::error_code ec;
  if (!fs::exists(fs::symlink_status(p, ec))) return;
  if (fs::is_directory(fs::symlink_status(p, ec)))
    for (const auto& e : fs::directory_iterator(p, ec)) remove_tree(e.path());
  fs::remove(p, ec);
  MH_CORE_CHECK(!ec, p.string(), ": cannot remove (", ec.message(), ")\nHINT: check permissions");
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

// One rank's folder: its parameters (when it is a model source), its optimizer state (sharded,
// or replicated from a model source), its RNG states and meta.json.
void write_rank_folder(CheckpointFormat& fmt, const fs::path& dir, const TrainingState& state,
                       const CheckpointParts& parts, const std::string& recipe_text) {
  const bool model_source = parts.model_source_rank == parts.rank;
  auto writer = fmt.open_writer(dir.string());
  int64_t num_params = 0;
  std::string model_id;
  if (model_source)
    for (Model* m : parts.chunks) {
      model_id = m->id();
      for (const Param& p : m->params()) {
        writer->tensor("model/" + p.name, p.data);
        num_params += p.data.numel();
      }
    }
  if (parts.visit_optimizer && (parts.optimizer_sharded || model_source))
    parts.visit_optimizer([&](const std::string& name, at::Tensor t) { writer->tensor("optimizer/" + name, t); });
  for (const auto& [name, gen] : default_generators()) writer->blob(name, generator_state(gen));
  nlohmann::json meta = {{"format", "megahost-checkpoint"},
                         {"version", 1},
                         {"checkpoint_plugin", fmt.id()},
                         {"iteration", state.iteration},
                         {"consumed_train_samples", state.consumed_train_samples},
                         {"num_parameters", num_params},
                         {"model_plugin", model_id},
                         {"optimizer_plugin", parts.optimizer_id},
                         {"world_size", parts.world_size},
                         {"rank", parts.rank},
                         {"layout", parts.layout},
                         {"megahost_version", MEGAHOST_VERSION}};
  writer->blob("meta.json", meta.dump(2));
  writer->blob("recipe.toml", recipe_text);
  writer->commit();
}

void barrier_if_many(const CheckpointParts& parts) {
  if (parts.world_size > 1) parts.barrier();
}

}  // namespace

void save_checkpoint(CheckpointFormat& fmt, const std::string& save_dir, const TrainingState& state,
                     const CheckpointParts& parts, const std::string& recipe_text, int64_t keep_last_n) {
  const bool leader = parts.rank == 0;
  const fs::path final_dir = iteration_dir(save_dir, state.iteration);
  const fs::path staging = final_dir.string() + ".tmp";
  if (leader) {
    fs::create_directories(save_dir);
    remove_tree(staging);
    if (parts.world_size > 1) fs::create_directories(staging);
  }
  barrier_if_many(parts);
  // One process writes the iteration folder itself (the layout of single-process checkpoints);
  // several write one folder each inside it.
  write_rank_folder(fmt, parts.world_size > 1 ? staging / rank_dir_name(parts.rank) : staging, state, parts,
                    recipe_text);
  barrier_if_many(parts);  // every rank's folder is committed before the iteration is published
  if (leader) {
    fsync_path(staging);
    // Publish: an older folder of the same iteration is replaced only after the new one is complete.
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
    write_file_atomic(fs::path(save_dir) / kTracker, std::to_string(state.iteration) + "\n");
  }
  barrier_if_many(parts);  // nobody trains on (or loads) before the tracker names this iteration
  // Pruning after publication: a kill in between leaves extra folders, never too few.
  if (leader && keep_last_n > 0) prune_checkpoints(save_dir, keep_last_n);
}

void prune_checkpoints(const std::string& save_dir, int64_t keep_last_n) {
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
    if (!tracked || iters[i].first != *tracked) remove_tree(iters[i].second);
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

}  // namespace

TrainingState load_checkpoint(CheckpointFormat& fmt, const std::string& dir, int64_t iteration,
                              const CheckpointParts& parts, const LoadOptions& opts) {
  const std::string iter_path = iteration_dir(dir, iteration);
  MH_CORE_CHECK(fs::is_directory(iter_path), iter_path, ": checkpoint folder missing (the tracker file names iteration ",
                iteration, ")\nHINT: point the tracker at an existing iter_* folder");
  const bool many = parts.world_size > 1;
  auto folder = [&](int rank) { return many ? (fs::path(iter_path) / rank_dir_name(rank)).string() : iter_path; };
  const bool has_rank_folders = fs::is_directory(fs::path(iter_path) / rank_dir_name(0));
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
    parts.visit_optimizer([&](const std::string& n, at::Tensor t) {
      const std::string name = "optimizer/" + n;
      MH_CORE_CHECK(opt_entries.count(name) != 0, opt_path, ": checkpoint has no optimizer state '", name,
                    "'\nHINT: set checkpoint.no_load_optim=true to start the optimizer afresh");
      opt_reader->tensor_into(name, t);
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
