// megahost convert: checkpoints between formats, as Megatron's tools/checkpoint/convert.py
// (--model-type GPT --loader L --saver S --load-dir A --save-dir B). A loader/saver name is
// resolved first as a converter plugin (mh.converter/1: hf = Hugging Face safetensors, GPT-2 /
// Llama / Mistral; a third party's converter alike), then as "megahost" (the --checkpoint-plugin
// format) or a [checkpoint] format plugin id: megahost checkpoints in that format.
#include <cstdio>

#include "commands.h"
#include "common.h"
#include "megahost/core/convert/format_copy.h"
#include "megahost/core/convert/hf.h"
#include "megahost/core/error.h"

namespace megahost::host {

namespace {

enum class Side { Converter, Megahost };

// A converter id or alias (hf, Megatron's "llama_mistral" / "huggingface", a third party's) ->
// Converter with *plugin = its id; "megahost" and any [checkpoint] format plugin id -> Megahost
// (the format in *plugin). "mcore" / "megatron" name Megatron's own torch format, which megahost
// does not read: refused with a hint rather than guessed.
Side side(const core::PluginRegistry& reg, const std::string& flag, const std::string& name,
          const std::string& default_plugin, std::string* plugin) {
  try {
    *plugin = reg.find(core::PluginKind::Converter, name).id;
    return Side::Converter;
  } catch (const core::Error&) {
  }
  *plugin = name == "megahost" ? default_plugin : name;
  try {
    reg.find(core::PluginKind::Checkpoint, *plugin);
  } catch (const core::Error& e) {
    std::string converters;
    for (const auto& p : reg.plugins())
      if (p.kind == core::PluginKind::Converter) converters += (converters.empty() ? "" : ", ") + p.id;
    throw core::Error(core::cat(flag, " ", name, " is unknown: neither a converter plugin (",
                                converters.empty() ? "none found" : converters,
                                "), megahost, nor a [checkpoint] format plugin (", e.what(), ")"));
  }
  return Side::Megahost;
}

}  // namespace

int cmd_convert(int argc, char** argv) {
  cxxopts::Options options("megahost convert",
                           "Convert a checkpoint, as Megatron's tools/checkpoint/convert.py.\n"
                           "  hf -> megahost: SAVE_DIR gets recipe.toml ([model] from config.json, [tokenizer]\n"
                           "                  from the folder's tokenizer.json) and iter_0000000 (load it with\n"
                           "                  checkpoint.finetune = true, or `megahost generate`).\n"
                           "  megahost -> hf: SAVE_DIR gets config.json + model.safetensors (+ tokenizer files).");
  options.add_options()("model-type", "GPT", cxxopts::value<std::string>()->default_value("GPT"))(
      "loader", "hf (or another converter plugin id) | megahost | a [checkpoint] format plugin id",
      cxxopts::value<std::string>())(
      "saver", "hf (or another converter plugin id) | megahost | a [checkpoint] format plugin id",
      cxxopts::value<std::string>())(
      "load-dir", "folder to read", cxxopts::value<std::string>())("save-dir", "folder to write",
                                                                    cxxopts::value<std::string>())(
      "target-tensor-parallel-size", "tensor-parallel size the megahost checkpoint is written for",
      cxxopts::value<int>()->default_value("1"))(
      "target-pipeline-parallel-size", "pipeline-parallel size the megahost checkpoint is written for",
      cxxopts::value<int>()->default_value("1"))(
      "checkpoint-plugin", "format plugin of the megahost side",
      cxxopts::value<std::string>()->default_value("megahost-tensors"))(
      "make-vocab-size-divisible-by", "pad the vocabulary to a multiple of this (Megatron's default 128)",
      cxxopts::value<int64_t>()->default_value("128"))(
      "plugin-path", "extra plugin folder (repeatable)", cxxopts::value<std::vector<std::string>>())(
      "h,help", "show this help");
  cxxopts::ParseResult args;
  int code = 0;
  if (!parse_flags(options, argc, argv, args, code)) return code;
  for (const char* required : {"loader", "saver", "load-dir", "save-dir"})
    if (args.count(required) == 0) {
      std::fprintf(stderr, "megahost convert: --%s is required\nusage: megahost convert --model-type GPT --loader "
                           "hf|megahost --saver megahost|hf --load-dir A --save-dir B\n", required);
      return kExitUsage;
    }
  return guarded("convert", [&] {
    const std::string model_type = args["model-type"].as<std::string>();
    MH_CORE_CHECK(model_type == "GPT", "--model-type ", model_type,
                  " is not supported\nHINT: GPT (the gpt model plugin) is the one model type for now");
    std::vector<std::string> extra;
    if (args.count("plugin-path") != 0) extra = args["plugin-path"].as<std::vector<std::string>>();
    core::PluginRegistry reg(search_path(extra));
    const std::string default_plugin = args["checkpoint-plugin"].as<std::string>();
    std::string loader_plugin, saver_plugin;
    const Side loader = side(reg, "--loader", args["loader"].as<std::string>(), default_plugin, &loader_plugin);
    const Side saver = side(reg, "--saver", args["saver"].as<std::string>(), default_plugin, &saver_plugin);
    MH_CORE_CHECK(loader == Side::Megahost || saver == Side::Megahost, "--loader ", loader_plugin, " and --saver ",
                  saver_plugin, " are both converters\nHINT: convert through megahost: --saver megahost first, then "
                  "--loader megahost");
    const int tp = args["target-tensor-parallel-size"].as<int>(), pp = args["target-pipeline-parallel-size"].as<int>();
    MH_CORE_CHECK(tp >= 1 && pp >= 1, "--target-tensor-parallel-size ", tp, " --target-pipeline-parallel-size ", pp,
                  ": sizes must be >= 1\nHINT: leave them out for a single-process checkpoint");
    MH_CORE_CHECK(loader == Side::Converter || saver == Side::Converter || (tp == 1 && pp == 1),
                  "--target-tensor-parallel-size ", tp, " --target-pipeline-parallel-size ", pp,
                  " from a megahost checkpoint: the layout stays as saved",
                  "\nHINT: leave the --target-* flags out: any TP / PP / DP layout loads a megahost checkpoint");
    MH_CORE_CHECK(saver == Side::Megahost || (tp == 1 && pp == 1), "--target-tensor-parallel-size ", tp,
                  " --target-pipeline-parallel-size ", pp, " with --saver ", saver_plugin, ": ",
                  saver_plugin == "hf" ? "a Hugging Face folder" : "a converter's folder",
                  " has no parallel layout\nHINT: leave the --target-* flags out (the megahost loader reads any layout)");
    core::ConvertOptions opts;
    opts.checkpoint_plugin = loader == Side::Converter ? saver_plugin : loader_plugin;
    opts.make_vocab_size_divisible_by = args["make-vocab-size-divisible-by"].as<int64_t>();
    opts.target_tp = tp;
    opts.target_pp = pp;
    MH_CORE_CHECK(opts.make_vocab_size_divisible_by > 0, "--make-vocab-size-divisible-by must be > 0");
    const std::string load = args["load-dir"].as<std::string>(), save = args["save-dir"].as<std::string>();
    const std::string summary =
        loader == Side::Converter
            ? core::convert_foreign_to_megahost(reg, loader_plugin, load, save, opts)
        : saver == Side::Converter ? core::convert_megahost_to_foreign(reg, saver_plugin, load, save, opts)
                                   : core::convert_checkpoint_format(reg, load, loader_plugin, save, saver_plugin);
    std::printf("%s\n", summary.c_str());
    return kExitOk;
  });
}

}  // namespace megahost::host
