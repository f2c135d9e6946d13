// megahost preprocess: the flags of Megatron's tools/preprocess_data.py.
#include <cstdio>

#include "commands.h"
#include "common.h"
#include "megahost/core/preprocess.h"

namespace megahost::host {

int cmd_preprocess(int argc, char** argv) {
  cxxopts::Options options("megahost preprocess",
                           "JSON lines -> <output-prefix>_<key>_document.bin/.idx, byte-identical to Megatron's "
                           "tools/preprocess_data.py.");
  options.add_options()("input", "JSON lines file", cxxopts::value<std::string>())(
      "output-prefix", "output path prefix", cxxopts::value<std::string>())(
      "json-keys", "fields to read (comma separated)", cxxopts::value<std::vector<std::string>>())(
      "json-key", "field to read (alias of --json-keys)", cxxopts::value<std::vector<std::string>>())(
      "tokenizer-type", "Megatron tokenizer name (e.g. GPT2BPETokenizer) or a plugin id",
      cxxopts::value<std::string>())("vocab-file", "vocabulary file", cxxopts::value<std::string>())(
      "merge-file", "BPE merges file", cxxopts::value<std::string>())(
      "tokenizer-model", "tokenizer model file (SentencePiece, HF)", cxxopts::value<std::string>())(
      "append-eod", "append the end-of-document token to every non-empty document")(
      "workers", "tokenizer threads", cxxopts::value<int>()->default_value("1"))(
      "partitions", "input partitions (only 1)", cxxopts::value<int>()->default_value("1"))(
      "log-interval", "report progress every N documents", cxxopts::value<int64_t>()->default_value("100000"))(
      "dataset-impl", "output format (mmap)", cxxopts::value<std::string>()->default_value("mmap"))(
      "split-sentences", "split documents into sentences (not available)")(
      "keep-newlines", "with --split-sentences only")(
      "plugin-path", "extra plugin folder (repeatable)", cxxopts::value<std::vector<std::string>>())(
      "h,help", "show this help");
  cxxopts::ParseResult args;
  int code = 0;
  if (!parse_flags(options, argc, argv, args, code)) return code;
  return guarded("preprocess", [&] {
    for (const char* required : {"input", "output-prefix", "tokenizer-type"}) {
      if (args.count(required) == 0) {
        std::fprintf(stderr, "megahost preprocess: --%s is required\n\n%s", required, options.help().c_str());
        return kExitUsage;
      }
    }
    if (args.count("split-sentences") != 0)
      throw std::runtime_error("--split-sentences is not available yet (Megatron uses NLTK's punkt splitter)\n"
                               "HINT: give pre-split sentences as a JSON array of strings in the field instead");
    if (args["partitions"].as<int>() != 1)
      throw std::runtime_error("--partitions > 1 is not needed: preprocessing streams the input with --workers "
                               "threads\nHINT: drop --partitions");
    if (args["dataset-impl"].as<std::string>() != "mmap")
      throw std::runtime_error("--dataset-impl must be mmap");
    core::PreprocessOptions o;
    o.input = args["input"].as<std::string>();
    o.output_prefix = args["output-prefix"].as<std::string>();
    if (args.count("json-keys") != 0) o.json_keys = args["json-keys"].as<std::vector<std::string>>();
    if (args.count("json-key") != 0) o.json_keys = args["json-key"].as<std::vector<std::string>>();
    o.tokenizer_type = args["tokenizer-type"].as<std::string>();
    if (args.count("vocab-file") != 0) o.vocab_file = args["vocab-file"].as<std::string>();
    if (args.count("merge-file") != 0) o.merge_file = args["merge-file"].as<std::string>();
    if (args.count("tokenizer-model") != 0) o.tokenizer_model = args["tokenizer-model"].as<std::string>();
    o.append_eod = args.count("append-eod") != 0;
    o.workers = args["workers"].as<int>();
    o.log_interval = args["log-interval"].as<int64_t>();
    std::vector<std::string> extra;
    if (args.count("plugin-path") != 0) extra = args["plugin-path"].as<std::vector<std::string>>();
    core::PluginRegistry reg(search_path(extra));
    core::PreprocessStats s = core::preprocess(o, reg);
    for (const auto& p : s.outputs) std::printf("wrote %s.bin and %s.idx\n", p.c_str(), p.c_str());
    std::printf("%lld documents, %lld tokens, %.1f MB in %.2f s (%.2f MB/s, %d workers)\n",
                static_cast<long long>(s.documents), static_cast<long long>(s.tokens), s.bytes / 1e6, s.seconds,
                s.seconds > 0 ? s.bytes / 1e6 / s.seconds : 0.0, o.workers);
    return kExitOk;
  });
}

}  // namespace megahost::host
