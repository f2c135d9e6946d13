// megahost convert: checkpoints between formats, as Megatron's tools/checkpoint/convert.py
// (--model-type GPT --loader L --saver S --load-dir A --save-dir B). Loaders/savers: hf (Hugging
// Face safetensors: GPT-2, Llama, Mistral), megahost (the --checkpoint-plugin format) or the id of
// any [checkpoint] format plugin (a third party's too): megahost checkpoints in that format.
#include <cstdio>

#include "commands.h"
#include "common.h"
#include "megahost/core/convert/format_copy.h"
#include "megahost/core/convert/hf.h"
#include "megahost/core/error.h"

namespace megahost::host {

namespace {

// Megatron's loader names for HF checkpoints map to "hf"; "megahost" and any [checkpoint] format
// plugin id to "megahost" (the format in *plugin). "mcore" / "megatron" name Megatron's own torch
// format, which megahost does not read: refused with a hint rather than guessed.
std::string side(const core::PluginRegistry& reg, const std::string& flag, const std::string& name,
                 const std::string& default_plugin, std::string* plugin) {
  if (name == "hf" || name == "llama_mistral" || name == "huggingface") return "hf";
  *plugin = name == "megahost" ? default_plugin : name;
  try {
    reg.find(core::PluginKind::Checkpoint, *plugin);
  } catch (const core::Error& e) {
    throw core::Error(core::cat(flag, " ", name, " is unknown: neither hf, megahost nor a [checkpoint] format plugin (",
                          e.what(), ")"));
  }
  return "megahost";
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
      "loader", "hf | megahost | a [checkpoint] format plugin id", cxxopts::value<std::string>())(
      "saver", "hf | megahost | a [checkpoint] format plugin id", cxxopts::value<std::string>())(
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
    const std::string loader = side(reg, "--loader", args["loader"].as<std::string>(), default_plugin, &loader_plugin);
    const std::string saver = side(reg, "--saver", args["saver"].as<std::string>(), default_plugin, &saver_plugin);
    MH_CORE_CHECK(loader != "hf" || saver != "hf", "--loader and --saver are both hf\nHINT: nothing to convert");
    const int tp = args["target-tensor-parallel-size"].as<int>(), pp = args["target-pipeline-parallel-size"].as<int>();
    MH_CORE_CHECK(tp >= 1 && pp >= 1, "--target-tensor-parallel-size ", tp, " --target-pipeline-parallel-size ", pp,
                  ": sizes must be >= 1\nHINT: leave them out for a single-process checkpoint");
    MH_CORE_CHECK(loader == "hf" || saver == "hf" || (tp == 1 && pp == 1), "--target-tensor-parallel-size ", tp,
                  " --target-pipeline-parallel-size ", pp, " from a megahost checkpoint: the layout stays as saved",
                  "\nHINT: leave the --target-* flags out: any TP / PP / DP layout loads a megahost checkpoint");
    MH_CORE_CHECK(saver == "megahost" || (tp == 1 && pp == 1), "--target-tensor-parallel-size ", tp,
                  " --target-pipeline-parallel-size ", pp, " with --saver hf: a Hugging Face folder has no parallel "
                  "layout\nHINT: leave the --target-* flags out (the megahost loader reads any layout)");
    core::HfConvertOptions opts;
    opts.checkpoint_plugin = loader == "hf" ? saver_plugin : loader_plugin;
    opts.make_vocab_size_divisible_by = args["make-vocab-size-divisible-by"].as<int64_t>();
    opts.target_tp = tp;
    opts.target_pp = pp;
    MH_CORE_CHECK(opts.make_vocab_size_divisible_by > 0, "--make-vocab-size-divisible-by must be > 0");
    const std::string load = args["load-dir"].as<std::string>(), save = args["save-dir"].as<std::string>();
    const std::string summary =
        loader == "hf"   ? core::convert_hf_to_megahost(reg, load, save, opts)
        : saver == "hf" ? core::convert_megahost_to_hf(reg, load, save, opts)
                        : core::convert_checkpoint_format(reg, load, loader_plugin, save, saver_plugin);
    std::printf("%s\n", summary.c_str());
    return kExitOk;
  });
}

}  // namespace megahost::host
