// megahost preprocess: the flags of Megatron's tools/preprocess_data.py, and --merge (Megatron's
// tools/merge_datasets.py). docs/data.md.
#include <cstdio>
#include <string>

#include "commands.h"
#include "common.h"
#include "megahost/core/preprocess.h"

namespace megahost::host {

int cmd_preprocess(int argc, char** argv) {
  cxxopts::Options options("megahost preprocess",
                           "JSON lines -> <output-prefix>_<key>_document.bin/.idx, byte-identical to Megatron's "
                           "tools/preprocess_data.py.\n  --merge: shards -> <output-prefix>.bin/.idx, as Megatron's "
                           "tools/merge_datasets.py.");
  options.add_options()("input",
                        "JSON lines file(s): repeat the flag or separate with commas; globs (quoted) are expanded "
                        "and sorted; plain, .gz or .zst; read in order as one stream. With --merge: a folder of "
                        "shards or shard prefixes",
                        cxxopts::value<std::vector<std::string>>())(
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
      "log-interval", "report progress every N documents (0: never)", cxxopts::value<int64_t>()->default_value("100000"))(
      "dataset-impl", "output format (mmap)", cxxopts::value<std::string>()->default_value("mmap"))(
      "split-sentences", "one sequence per sentence (rule-based splitter, docs/data.md); writes "
                         "<prefix>_<key>_sentence")(
      "keep-newlines", "with --split-sentences: keep the whitespace (newlines) after each sentence")(
      "merge", "merge the shards given by --input into <output-prefix>.bin/.idx")(
      "vocab-size", "vocabulary size (NullTokenizer)", cxxopts::value<int64_t>())(
      "vocab-extra-ids", "extra sentinel ids (BERT WordPiece, Megatron's --vocab-extra-ids)",
      cxxopts::value<int64_t>())(
      "plugin-path", "extra plugin folder (repeatable)", cxxopts::value<std::vector<std::string>>())(
      "h,help", "show this help");
  cxxopts::ParseResult args;
  int code = 0;
  if (!parse_flags(options, argc, argv, args, code)) return code;
  return guarded("preprocess", [&] {
    const bool merge = args.count("merge") != 0;
    for (const char* required : {"input", "output-prefix", "tokenizer-type"}) {
      if (merge && std::string(required) == "tokenizer-type") continue;
      if (args.count(required) == 0) {
        std::fprintf(stderr, "megahost preprocess: --%s is required\n\n%s", required, options.help().c_str());
        return kExitUsage;
      }
    }
    std::vector<std::string> extra;
    if (args.count("plugin-path") != 0) extra = args["plugin-path"].as<std::vector<std::string>>();
    if (merge) {
      core::PluginRegistry reg(search_path(extra));
      const std::string out = args["output-prefix"].as<std::string>();
      core::MergeStats s = core::merge_datasets(args["input"].as<std::vector<std::string>>(), out, reg);
      std::printf("merged %zu shards into %s.bin and %s.idx: %llu sequences, %llu tokens in %.2f s\n",
                  s.shards.size(), out.c_str(), out.c_str(), static_cast<unsigned long long>(s.sequences),
                  static_cast<unsigned long long>(s.tokens), s.seconds);
      return kExitOk;
    }
    if (args["partitions"].as<int>() != 1)
      throw std::runtime_error("--partitions > 1 is not needed: preprocessing streams the input with --workers "
                               "threads\nHINT: drop --partitions");
    if (args["dataset-impl"].as<std::string>() != "mmap")
      throw std::runtime_error("--dataset-impl must be mmap");
    core::PreprocessOptions o;
    o.inputs = args["input"].as<std::vector<std::string>>();
    o.output_prefix = args["output-prefix"].as<std::string>();
    if (args.count("json-keys") != 0) o.json_keys = args["json-keys"].as<std::vector<std::string>>();
    if (args.count("json-key") != 0) o.json_keys = args["json-key"].as<std::vector<std::string>>();
    o.tokenizer_type = args["tokenizer-type"].as<std::string>();
    if (args.count("vocab-file") != 0) o.vocab_file = args["vocab-file"].as<std::string>();
    if (args.count("merge-file") != 0) o.merge_file = args["merge-file"].as<std::string>();
    if (args.count("tokenizer-model") != 0) o.tokenizer_model = args["tokenizer-model"].as<std::string>();
    if (args.count("vocab-size") != 0) o.vocab_size = args["vocab-size"].as<int64_t>();
    if (args.count("vocab-extra-ids") != 0) o.vocab_extra_ids = args["vocab-extra-ids"].as<int64_t>();
    o.append_eod = args.count("append-eod") != 0;
    o.split_sentences = args.count("split-sentences") != 0;
    o.keep_newlines = args.count("keep-newlines") != 0;
    o.workers = args["workers"].as<int>();
    o.log_interval = args["log-interval"].as<int64_t>();
    core::PluginRegistry reg(search_path(extra));
    core::PreprocessStats s = core::preprocess(o, reg);
    for (const auto& p : s.outputs) std::printf("wrote %s.bin and %s.idx\n", p.c_str(), p.c_str());
    const double secs = s.seconds > 0 ? s.seconds : 1e-9;
    std::printf("%lld documents, %lld tokens, %.1f MB in %.2f s (%.2f MB/s, %.2f M tokens/s, %d workers)\n",
                static_cast<long long>(s.documents), static_cast<long long>(s.tokens), s.bytes / 1e6, s.seconds,
                s.bytes / 1e6 / secs, static_cast<double>(s.tokens) / 1e6 / secs, o.workers);
    return kExitOk;
  });
}

}  // namespace megahost::host
