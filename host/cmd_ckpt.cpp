// megahost ckpt verify|inspect DIR: check a checkpoint fully, or list its metadata and tensors.
#include <cstdio>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "common.h"
#include "megahost/core/engine/checkpoint_inspect.h"
#include "megahost/core/error.h"

namespace megahost::host {

namespace {

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// The format id meta.json names, read through format `id` (meta.json is stored by the format
// itself); empty when that format cannot read the folder.
std::string named_format(const core::PluginRegistry& reg, const std::string& id, const std::string& iter_dir) {
  try {
    auto fmt = core::create_checkpoint_format(reg, id, core::ConfigSection{});
    auto folders = core::inspect_checkpoint(*fmt, iter_dir);
    const auto meta = nlohmann::json::parse(folders.front().meta_json, nullptr, false);
    return meta.is_object() ? meta.value("checkpoint_plugin", id) : id;
  } catch (const std::exception&) {
    return {};
  }
}

// The format plugin: --plugin when given (verify then reports what it cannot read, entry by
// entry), else the first loaded format that reads the folder's meta.json — the one it names.
std::unique_ptr<core::CheckpointFormat> open_format(const core::PluginRegistry& reg, const std::string& id,
                                                    bool id_given, const std::string& iter_dir) {
  std::vector<std::string> candidates = {id};
  if (!id_given)
    for (const auto& p : reg.plugins())
      if (p.kind == core::PluginKind::Checkpoint && p.id != id) candidates.push_back(p.id);
  for (const std::string& candidate : candidates) {
    const std::string named = named_format(reg, candidate, iter_dir);
    if (!named.empty()) return core::create_checkpoint_format(reg, named, core::ConfigSection{});
  }
  return core::create_checkpoint_format(reg, id, core::ConfigSection{});
}

}  // namespace

int cmd_ckpt(int argc, char** argv) {
  cxxopts::Options options("megahost ckpt", "verify DIR: read every tensor and check its checksum, and that the rank\n"
                                            "            folders cover every global tensor.\n"
                                            "inspect DIR: metadata and tensors (name, dtype, shape, bytes, global\n"
                                            "             shape, slice).\n"
                                            "DIR: a save folder (its latest checkpoint) or one iter_* folder.");
  options.add_options()("action", "verify or inspect", cxxopts::value<std::string>())(
      "dir", "checkpoint folder", cxxopts::value<std::string>())("json", "machine-readable output (inspect)")(
      "plugin", "checkpoint format plugin to read meta.json with (default: the first that reads it)",
      cxxopts::value<std::string>()->default_value("megahost-tensors"))(
      "plugin-path", "extra plugin folder (repeatable)", cxxopts::value<std::vector<std::string>>())(
      "h,help", "show this help");
  options.parse_positional({"action", "dir"});
  options.positional_help("verify|inspect DIR");
  cxxopts::ParseResult args;
  int code = 0;
  if (!parse_flags(options, argc, argv, args, code)) return code;
  if (args.count("action") == 0 || args.count("dir") == 0 ||
      (args["action"].as<std::string>() != "verify" && args["action"].as<std::string>() != "inspect")) {
    std::fprintf(stderr, "usage: megahost ckpt verify|inspect DIR [--json]\n");
    return kExitUsage;
  }
  return guarded("ckpt", [&] {
    std::vector<std::string> extra;
    if (args.count("plugin-path") != 0) extra = args["plugin-path"].as<std::vector<std::string>>();
    core::PluginRegistry reg(search_path(extra));
    const std::string iter_dir = core::resolve_checkpoint_dir(args["dir"].as<std::string>());
    auto fmt = open_format(reg, args["plugin"].as<std::string>(), args.count("plugin") != 0, iter_dir);

    if (args["action"].as<std::string>() == "verify") {
      const auto problems = core::verify_checkpoint(*fmt, iter_dir);
      for (const auto& p : problems)
        std::fprintf(stderr, "error: %s%s%s: %s\n", p.folder.c_str(), p.entry.empty() ? "" : ": entry '",
                     p.entry.empty() ? "" : (p.entry + "'").c_str(), p.message.c_str());
      if (!problems.empty()) {
        std::fprintf(stderr, "%s: %zu problem(s)\nHINT: resume from an older iter_* folder (edit "
                             "latest_checkpointed_iteration.txt)\n", iter_dir.c_str(), problems.size());
        return kExitError;
      }
      std::printf("%s: OK (%zu folder(s), every entry read and its checksum matched, every global tensor covered "
                  "by the rank folders)\n", iter_dir.c_str(),
                  core::checkpoint_rank_folders(iter_dir).size());
      return kExitOk;
    }

    const auto folders = core::inspect_checkpoint(*fmt, iter_dir);
    if (args.count("json") != 0) {
      nlohmann::json out = {{"path", iter_dir}, {"checkpoint_plugin", fmt->id()}, {"folders", nlohmann::json::array()}};
      for (const auto& f : folders) {
        const auto shards = nlohmann::json::parse(f.shards_json.empty() ? "{}" : f.shards_json, nullptr, false);
        nlohmann::json jf = {{"path", f.path}, {"meta", nlohmann::json::parse(f.meta_json, nullptr, false)},
                             {"tensors", nlohmann::json::array()}, {"blobs", nlohmann::json::array()}};
        for (const auto& e : f.entries) {
          if (e.is_blob)
            jf["blobs"].push_back({{"name", e.name}, {"bytes", e.nbytes}});
          else {
            nlohmann::json jt = {{"name", e.name}, {"dtype", c10::toString(e.dtype)}, {"shape", e.shape},
                                 {"bytes", e.nbytes}};
            if (shards.is_object() && shards.contains("tensors") && shards["tensors"].contains(e.name))
              jt["slice"] = shards["tensors"][e.name];  // global_shape, offsets, lengths (glu_dim, flat)
            jf["tensors"].push_back(std::move(jt));
          }
        }
        out["folders"].push_back(std::move(jf));
      }
      std::printf("%s\n", out.dump(2).c_str());
      return kExitOk;
    }
    std::printf("checkpoint %s (format plugin %s)\n", iter_dir.c_str(), fmt->id().c_str());
    for (const auto& f : folders) {
      std::printf("\n%s\n", f.path.c_str());
      const auto meta = nlohmann::json::parse(f.meta_json, nullptr, false);
      if (meta.is_object())
        for (const auto& [k, v] : meta.items()) std::printf("  %-24s %s\n", k.c_str(), v.dump().c_str());
      const auto shards = nlohmann::json::parse(f.shards_json.empty() ? "{}" : f.shards_json, nullptr, false);
      const bool has_slices = shards.is_object() && shards.contains("tensors");
      std::printf("  %-56s %-9s %-18s %-12s %-18s %s\n", "TENSOR", "DTYPE", "SHAPE", "BYTES", "GLOBAL SHAPE", "SLICE");
      uint64_t total = 0;
      for (const auto& e : f.entries)
        if (!e.is_blob) {
          std::string global = "-", slice = has_slices ? "(no record)" : "-";
          if (has_slices && shards["tensors"].contains(e.name)) {
            const auto& j = shards["tensors"][e.name];
            global = shape_str(j.value("global_shape", std::vector<int64_t>{}));
            const auto off = j.value("offsets", std::vector<int64_t>{});
            const auto len = j.value("lengths", std::vector<int64_t>{});
            slice.clear();
            for (size_t d = 0; d < off.size() && d < len.size(); ++d)
              slice += core::cat(d ? "," : "", off[d], ":", off[d] + len[d]);
            slice = "[" + slice + "]";
            if (j.contains("glu_dim")) slice += core::cat(" glu_dim ", j["glu_dim"].get<int>());
            if (j.contains("flat"))
              slice += core::cat(" flat ", j["flat"][0].get<int64_t>(), "+", j["flat"][1].get<int64_t>());
          }
          std::printf("  %-56s %-9s %-18s %-12llu %-18s %s\n", e.name.c_str(), c10::toString(e.dtype),
                      shape_str(e.shape).c_str(), static_cast<unsigned long long>(e.nbytes), global.c_str(),
                      slice.c_str());
          total += e.nbytes;
        }
      std::printf("  total %llu bytes of tensors\n", static_cast<unsigned long long>(total));
    }
    return kExitOk;
  });
}

}  // namespace megahost::host
