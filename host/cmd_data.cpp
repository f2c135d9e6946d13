// megahost data inspect PREFIX: what a tokenized dataset holds (counts, dtype, file sizes, length
// histogram) and, with a tokenizer, a sequence, a document or a GPT training sample decoded.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <optional>

#include "commands.h"
#include "common.h"
#include "megahost/core/data/gpt_dataset.h"
#include "megahost/core/error.h"
#include "megahost/core/recipe.h"
#include "megahost/core/schema.h"

namespace megahost::host {

namespace {

namespace fs = std::filesystem;
using nlohmann::ordered_json;

const char* dtype_name(mh_token_dtype t) {
  switch (t) {
    case MH_DTYPE_UINT8: return "uint8";
    case MH_DTYPE_INT8: return "int8";
    case MH_DTYPE_INT16: return "int16";
    case MH_DTYPE_INT32: return "int32";
    case MH_DTYPE_INT64: return "int64";
    case MH_DTYPE_FLOAT64: return "float64";
    case MH_DTYPE_FLOAT32: return "float32";
    case MH_DTYPE_UINT16: return "uint16";
    default: return "unknown";
  }
}

// A dataset reader seen as a token source (for GPT samples).
class ReaderSource : public core::data::TokenSource {
 public:
  explicit ReaderSource(const core::DatasetReader& r) : r_(r), lengths_(r.sequence_lengths()) {}
  uint64_t num_sequences() const override { return lengths_.size(); }
  const std::vector<int32_t>& sequence_lengths() const override { return lengths_; }
  void read(uint64_t seq, uint64_t offset, uint64_t count, int64_t* out) const override {
    r_.read(seq, offset, count, out);
  }

 private:
  const core::DatasetReader& r_;
  std::vector<int32_t> lengths_;
};

ordered_json summary(const core::DatasetReader& r, const std::string& prefix, const std::vector<int32_t>& lengths) {
  ordered_json j;
  j["prefix"] = prefix;
  j["dtype"] = dtype_name(r.dtype());
  j["sequences"] = r.num_sequences();
  j["documents"] = r.num_documents();
  j["tokens"] = r.num_tokens();
  ordered_json files = ordered_json::object();
  for (const char* ext : {".bin", ".idx"}) {
    std::error_code ec;
    const auto size = fs::file_size(prefix + ext, ec);
    if (!ec) files[prefix + ext] = size;
  }
  j["files"] = files;
  int64_t lo = std::numeric_limits<int64_t>::max(), hi = 0, total = 0;
  // Log2 buckets: "0" for empty sequences, then [2^k, 2^(k+1)).
  std::vector<int64_t> buckets(33, 0);
  int64_t empty = 0;
  for (int32_t n : lengths) {
    lo = std::min<int64_t>(lo, n);
    hi = std::max<int64_t>(hi, n);
    total += n;
    if (n <= 0) ++empty;
    else ++buckets[static_cast<size_t>(63 - __builtin_clzll(static_cast<uint64_t>(n)))];
  }
  ordered_json len;
  len["min"] = lengths.empty() ? 0 : lo;
  len["mean"] = lengths.empty() ? 0.0 : static_cast<double>(total) / static_cast<double>(lengths.size());
  len["max"] = hi;
  j["sequence_length"] = len;
  ordered_json hist = ordered_json::array();
  if (empty > 0) hist.push_back({{"from", 0}, {"to", 0}, {"sequences", empty}});
  for (size_t k = 0; k < buckets.size(); ++k)
    if (buckets[k] > 0)
      hist.push_back({{"from", int64_t{1} << k}, {"to", (int64_t{1} << (k + 1)) - 1}, {"sequences", buckets[k]}});
  j["length_histogram"] = hist;
  return j;
}

void print_text(const ordered_json& j) {
  std::printf("dataset    %s\n", j["prefix"].get<std::string>().c_str());
  std::printf("dtype      %s\n", j["dtype"].get<std::string>().c_str());
  std::printf("sequences  %llu\n", static_cast<unsigned long long>(j["sequences"].get<uint64_t>()));
  std::printf("documents  %llu\n", static_cast<unsigned long long>(j["documents"].get<uint64_t>()));
  std::printf("tokens     %llu\n", static_cast<unsigned long long>(j["tokens"].get<uint64_t>()));
  for (const auto& [path, size] : j["files"].items())
    std::printf("file       %s  %llu bytes\n", path.c_str(), static_cast<unsigned long long>(size.get<uint64_t>()));
  const auto& len = j["sequence_length"];
  std::printf("length     min %lld  mean %.1f  max %lld tokens\n", static_cast<long long>(len["min"].get<int64_t>()),
              len["mean"].get<double>(), static_cast<long long>(len["max"].get<int64_t>()));
  std::printf("histogram  (sequences per length bucket)\n");
  const auto& hist = j["length_histogram"];
  int64_t most = 1;
  for (const auto& b : hist) most = std::max(most, b["sequences"].get<int64_t>());
  for (const auto& b : hist) {
    const int64_t n = b["sequences"].get<int64_t>();
    const std::string bar(static_cast<size_t>((n * 40 + most - 1) / most), '#');
    std::printf("  %8lld - %-8lld %10lld  %s\n", static_cast<long long>(b["from"].get<int64_t>()),
                static_cast<long long>(b["to"].get<int64_t>()), static_cast<long long>(n), bar.c_str());
  }
  for (const char* what : {"sequence", "document", "sample"}) {
    if (!j.contains(what)) continue;
    const auto& s = j[what];
    std::printf("\n%s %lld", what, static_cast<long long>(s["index"].get<int64_t>()));
    if (s.contains("split"))
      std::printf(" (%s split, seq_length %lld, seed %lld, %lld epochs)", s["split"].get<std::string>().c_str(),
                  static_cast<long long>(s["seq_length"].get<int64_t>()), static_cast<long long>(s["seed"].get<int64_t>()),
                  static_cast<long long>(s["epochs"].get<int64_t>()));
    std::printf(": %zu tokens\n", s["tokens"].size());
    std::string ids;
    for (const auto& t : s["tokens"]) ids += std::to_string(t.get<int64_t>()) + " ";
    std::printf("ids  %s\n", ids.c_str());
    if (s.contains("text")) std::printf("text %s\n", s["text"].get<std::string>().c_str());
  }
}

ordered_json tokens_json(const std::vector<int64_t>& ids, const core::Tokenizer* tok) {
  ordered_json j;
  j["tokens"] = ids;
  if (tok != nullptr) {
    std::vector<int32_t> narrow(ids.begin(), ids.end());
    j["text"] = tok->decode(narrow);
  }
  return j;
}

}  // namespace

int cmd_data(int argc, char** argv) {
  cxxopts::Options options("megahost data",
                           "Counts, dtype, file sizes and sequence-length histogram of a tokenized dataset "
                           "(PREFIX.bin/.idx); with a tokenizer, sequence, document or GPT sample i decoded.");
  options.positional_help("inspect PREFIX");
  options.add_options()("action", "inspect", cxxopts::value<std::string>())(
      "prefix", "dataset path prefix", cxxopts::value<std::string>())(
      "recipe", "take the tokenizer, dataset plugin, split, seq_length and seed from this recipe",
      cxxopts::value<std::string>())("tokenizer-type", "Megatron tokenizer name or plugin id",
                                     cxxopts::value<std::string>())(
      "vocab-file", "vocabulary file", cxxopts::value<std::string>())(
      "merge-file", "BPE merges file", cxxopts::value<std::string>())(
      "tokenizer-model", "tokenizer model file", cxxopts::value<std::string>())(
      "vocab-size", "vocabulary size (NullTokenizer)", cxxopts::value<int64_t>())(
      "sequence", "decode sequence I", cxxopts::value<int64_t>())(
      "document", "decode document I (its sequences)", cxxopts::value<int64_t>())(
      "sample", "decode GPT training sample I (after the shuffle)", cxxopts::value<int64_t>())(
      "seq-length", "GPT sample length (with --sample)", cxxopts::value<int64_t>())(
      "num-samples", "samples requested from the split, as the run asks (with --sample; default one epoch)",
      cxxopts::value<int64_t>())(
      "seed", "shuffle seed (with --sample; default 1234)", cxxopts::value<int64_t>())(
      "split", "train,valid,test proportions (with --sample; default 969,30,1)", cxxopts::value<std::string>())(
      "split-name", "which split --sample reads: train, valid or test",
      cxxopts::value<std::string>()->default_value("train"))(
      "json", "print JSON")("plugin-path", "extra plugin folder (repeatable)",
                            cxxopts::value<std::vector<std::string>>())("h,help", "show this help");
  options.parse_positional({"action", "prefix"});
  cxxopts::ParseResult args;
  int code = 0;
  if (!parse_flags(options, argc, argv, args, code)) return code;
  return guarded("data", [&] {
    if (args.count("action") == 0 || args["action"].as<std::string>() != "inspect" || args.count("prefix") == 0) {
      std::fprintf(stderr, "usage: megahost data inspect PREFIX [options]\n\n%s", options.help().c_str());
      return kExitUsage;
    }
    const std::string prefix = args["prefix"].as<std::string>();
    std::optional<core::Recipe> recipe;
    std::vector<std::string> extra;
    if (args.count("recipe") != 0) {
      recipe = core::load_recipe(args["recipe"].as<std::string>(), {});
      extra = recipe->plugin_path;
    }
    if (args.count("plugin-path") != 0)
      for (const auto& p : args["plugin-path"].as<std::vector<std::string>>()) extra.push_back(p);
    core::PluginRegistry reg(search_path(extra));

    auto format = recipe ? reg.create_dataset(recipe->get_string("data", "plugin"), recipe->section("data"),
                                              core::host_keys("data"))
                         : reg.create_dataset("mmap-indexed", core::ConfigSection{});
    auto reader = format->open_reader(prefix);  // the plugin's errors name the file and the problem
    const std::vector<int32_t> lengths = reader->sequence_lengths();
    ordered_json j = summary(*reader, prefix, lengths);

    std::unique_ptr<core::Tokenizer> tok;
    if (recipe) {
      tok = reg.create_tokenizer(recipe->get_string("tokenizer", "plugin"), recipe->section("tokenizer"),
                                 core::host_keys("tokenizer"));
    } else if (args.count("tokenizer-type") != 0) {
      core::ConfigSection s;
      s.file = "data inspect flags";
      s.name = "tokenizer";
      for (const char* flag : {"vocab-file", "merge-file", "tokenizer-model"}) {
        std::string key = flag;
        std::replace(key.begin(), key.end(), '-', '_');
        if (args.count(flag) != 0) s.table->insert(key, args[flag].as<std::string>());
      }
      if (args.count("vocab-size") != 0) s.table->insert("vocab_size", args["vocab-size"].as<int64_t>());
      tok = reg.create_tokenizer(args["tokenizer-type"].as<std::string>(), s);
    }

    const uint64_t num_seq = reader->num_sequences();
    if (args.count("sequence") != 0) {
      const int64_t i = args["sequence"].as<int64_t>();
      MH_CORE_CHECK(i >= 0 && static_cast<uint64_t>(i) < num_seq, "--sequence ", i, " is out of range: ", prefix,
                    " has ", num_seq, " sequences (0 to ", num_seq - 1, ")");
      std::vector<int64_t> ids(static_cast<size_t>(lengths[static_cast<size_t>(i)]));
      reader->read(static_cast<uint64_t>(i), 0, ids.size(), ids.data());
      j["sequence"] = tokens_json(ids, tok.get());
      j["sequence"]["index"] = i;
    }
    if (args.count("document") != 0) {
      const int64_t i = args["document"].as<int64_t>();
      const std::vector<int64_t> docs = reader->document_indices();  // boundaries: D + 1 entries
      const int64_t num_docs = static_cast<int64_t>(docs.size()) - 1;
      MH_CORE_CHECK(i >= 0 && i < num_docs, "--document ", i, " is out of range: ", prefix, " has ", num_docs,
                    " documents (0 to ", num_docs - 1, ")");
      std::vector<int64_t> ids;
      for (int64_t s = docs[static_cast<size_t>(i)]; s < docs[static_cast<size_t>(i) + 1]; ++s) {
        const size_t n = static_cast<size_t>(lengths[static_cast<size_t>(s)]);
        ids.resize(ids.size() + n);
        reader->read(static_cast<uint64_t>(s), 0, n, ids.data() + ids.size() - n);
      }
      j["document"] = tokens_json(ids, tok.get());
      j["document"]["index"] = i;
    }
    if (args.count("sample") != 0) {
      const int64_t i = args["sample"].as<int64_t>();
      // The run's sample i needs the run's request (train: train_iters x global_batch_size):
      // more epochs shuffle the document index differently.
      core::data::GPTIndexConfig cfg;
      if (args.count("num-samples") != 0) cfg.num_samples = args["num-samples"].as<int64_t>();
      if (args.count("seq-length") != 0) {
        cfg.seq_length = args["seq-length"].as<int64_t>();
      } else if (recipe && recipe->section("model").table->get("seq_length") != nullptr) {
        cfg.seq_length = recipe->section("model").table->get("seq_length")->value<int64_t>().value_or(0);
      }
      MH_CORE_CHECK(cfg.seq_length > 0, "--sample needs the sample length\nHINT: add --seq-length 1024 (or --recipe R)");
      cfg.seed = static_cast<uint32_t>(args.count("seed") != 0 ? args["seed"].as<int64_t>()
                                       : recipe ? recipe->get_int("training", "seed") : 1234);
      const std::string split = args.count("split") != 0 ? args["split"].as<std::string>()
                                : recipe ? recipe->get_string("data", "split") : "969,30,1";
      const std::string name = args["split-name"].as<std::string>();
      int k = -1;
      for (int s = 0; s < 3; ++s)
        if (name == core::data::split_name(static_cast<core::data::Split>(s))) k = s;
      MH_CORE_CHECK(k >= 0, "--split-name '", name, "' is not train, valid or test");
      const auto range = core::data::split_sequence_ranges(split, static_cast<int64_t>(num_seq))[k];
      MH_CORE_CHECK(range && range->size() > 0, "the ", name, " split of \"", split, "\" is empty for ", prefix,
                    " (", num_seq, " sequences)\nHINT: choose another --split or --split-name");
      ReaderSource source(*reader);
      core::data::GPTDataset ds(source, *range, cfg, core::cat(prefix, " (", name, ")"));
      MH_CORE_CHECK(i >= 0 && i < ds.size(), "--sample ", i, " is out of range: the ", name, " split has ", ds.size(),
                    " samples of ", cfg.seq_length, " tokens (", ds.indices().plan.num_epochs, " epochs)",
                    "\nHINT: --num-samples N asks for more (as a run does)");
      std::vector<int64_t> ids(static_cast<size_t>(ds.sample_length()));
      ids.resize(static_cast<size_t>(ds.sample(i, ids.data())));
      j["sample"] = tokens_json(ids, tok.get());
      j["sample"]["index"] = i;
      j["sample"]["split"] = name;
      j["sample"]["seq_length"] = cfg.seq_length;
      j["sample"]["seed"] = cfg.seed;
      j["sample"]["epochs"] = ds.indices().plan.num_epochs;
    }
    if (args.count("json") != 0) std::printf("%s\n", j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    else print_text(j);
    return kExitOk;
  });
}

}  // namespace megahost::host
