// Megatron's checkpoint format converter in a run: load as usual, save through another format
// plugin into another folder, stop.
#include "megahost/core/engine/checkpoint_convert.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <filesystem>

#include "megahost/core/error.h"
#include "megahost/core/files.h"

namespace megahost::core {

namespace fs = std::filesystem;

namespace {

constexpr const char* kFormatKey = "ckpt_convert_format";
constexpr const char* kSaveKey = "ckpt_convert_save";

std::string key_at(const Recipe& r, const char* key) { return cat(r.where("checkpoint", key), ": [checkpoint] ", key); }

// The target format's config: the recipe's [checkpoint] plugin keys belong to `plugin`, so the
// same format gets them and another one starts from its defaults.
ConfigSection target_config(const Recipe& r, const std::string& id) {
  if (id == r.get_string("checkpoint", "plugin")) return r.section("checkpoint");
  ConfigSection s;
  s.file = r.path;
  s.name = "checkpoint";
  return s;
}

bool same_folder(const std::string& a, const std::string& b) {
  std::error_code ec;
  if (fs::exists(a, ec) && fs::exists(b, ec)) return fs::equivalent(a, b, ec);
  return fs::weakly_canonical(a, ec) == fs::weakly_canonical(b, ec);
}

}  // namespace

bool checkpoint_conversion_requested(const Recipe& r) { return r.has("checkpoint", kFormatKey); }

void check_checkpoint_conversion(const Recipe& r, const PluginRegistry& reg) {
  const bool has_format = r.has("checkpoint", kFormatKey), has_save = r.has("checkpoint", kSaveKey);
  if (!has_format && !has_save) return;
  MH_CORE_CHECK(has_format, key_at(r, kSaveKey), " is set without ckpt_convert_format",
                "\nHINT: name the format plugin to write, e.g. ckpt_convert_format = \"megahost-tensors\" "
                "(`megahost plugins` lists the checkpoint plugins)");
  const std::string id = r.get_string("checkpoint", kFormatKey);
  MH_CORE_CHECK(has_save, key_at(r, kFormatKey), " = '", id, "' needs checkpoint.ckpt_convert_save",
                "\nHINT: set ckpt_convert_save to the folder the converted checkpoint goes to");
  try {
    reg.find(PluginKind::Checkpoint, id);
  } catch (const Error& e) {
    throw Error(cat(key_at(r, kFormatKey), " = '", id, "': ", e.what()));
  }
  MH_CORE_CHECK(r.has("checkpoint", "load"), key_at(r, kFormatKey),
                " converts the checkpoint in checkpoint.load, which is not set",
                "\nHINT: set [checkpoint] load to the save folder to convert");
  const std::string load = r.get_string("checkpoint", "load");
  const std::string save = r.get_string("checkpoint", kSaveKey);
  MH_CORE_CHECK(!same_folder(load, save), key_at(r, kSaveKey), " = '", save,
                "' is the load folder\nHINT: write the converted checkpoint into another folder");
  for (const char* k : {"finetune", "no_load_optim", "no_load_rng"})
    MH_CORE_CHECK(!r.get_bool("checkpoint", k), key_at(r, kFormatKey), " with checkpoint.", k,
                  " = true: the converted checkpoint would hold state that was never loaded",
                  "\nHINT: a conversion writes back everything it loads; remove ", k);
  // Megatron's exit_on_missing_checkpoint: a conversion without a checkpoint is an error.
  auto fmt = create_checkpoint_format(reg, r.get_string("checkpoint", "plugin"), r.section("checkpoint"),
                                      host_keys("checkpoint"));
  MH_CORE_CHECK(find_resume_checkpoint(*fmt, load, /*log=*/false).has_value(), key_at(r, kFormatKey),
                ": checkpoint.load = '", load, "' holds no checkpoint (no tracker file, no iter_* folder)",
                "\nHINT: point checkpoint.load at a save folder");
}

void convert_loaded_checkpoint(const Recipe& r, const PluginRegistry& reg, const TrainingState& state,
                               const CheckpointParts& parts, const std::string& recipe_text) {
  const std::string id = r.get_string("checkpoint", kFormatKey);
  const std::string save = r.get_string("checkpoint", kSaveKey);
  const std::string load = r.get_string("checkpoint", "load");
  auto target = create_checkpoint_format(reg, id, target_config(r, id), host_keys("checkpoint"));
  const auto t0 = std::chrono::steady_clock::now();
  save_checkpoint(*target, save, state, parts, recipe_text, /*keep_last_n=*/0);
  if (parts.rank == 0)
    spdlog::info("converted checkpoint {} (format '{}') to {} (format '{}') in {:.2f} s, {:.1f} MB: iteration {}, "
                 "layout '{}'; stopping without training (ckpt_convert_format)",
                 iteration_dir(load, state.iteration), r.get_string("checkpoint", "plugin"),
                 iteration_dir(save, state.iteration), target->id(),
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(),
                 static_cast<double>(tree_bytes(iteration_dir(save, state.iteration))) / 1e6, state.iteration,
                 parts.layout.empty() ? std::string("one process") : parts.layout);
}

}  // namespace megahost::core
