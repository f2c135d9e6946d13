// bench_sentencepiece — encode throughput of the SentencePiece tokenizers on the Brown corpus.
//
//   megahost_bench_sentencepiece [--input brown.jsonl] [--work DIR] [--vocab 8000] [--threads N]
//                                [--passes P]
//
// Trains a BPE and a unigram model on the documents of --input with `spm_train` (vocab 8000 by
// default, cached in --work), then encodes every document one call each, as preprocessing does,
// and prints MB/s (of UTF-8 input) and tokens/s: the plain SentencePiece ids
// (GPTSentencePieceTokenizer), Megatron's SentencePieceTokenizer (special-token text split out
// first), and N threads sharing one instance.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "spm_tokenizer.h"

namespace fs = std::filesystem;
using megahost::tokenizers::SpmTokenizer;
using megahost::tokenizers::SpmVariant;

namespace {

struct Options {
  fs::path input = fs::path(MEGAHOST_FETCHED_DATA_DIR) / "brown.jsonl";
  fs::path work = fs::temp_directory_path() / "megahost_bench_sentencepiece";
  int vocab = 8000;
  int threads = 2;
  int passes = 3;
};

[[noreturn]] void usage(const std::string& msg) {
  std::fprintf(stderr,
               "error: %s\nusage: megahost_bench_sentencepiece [--input F.jsonl] [--work DIR] [--vocab N] "
               "[--threads N] [--passes P]\n",
               msg.c_str());
  std::exit(2);
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) usage("missing value for " + a);
    const char* v = argv[++i];
    if (a == "--input") o.input = v;
    else if (a == "--work") o.work = v;
    else if (a == "--vocab") o.vocab = std::max(100, std::atoi(v));
    else if (a == "--threads") o.threads = std::max(1, std::atoi(v));
    else if (a == "--passes") o.passes = std::max(1, std::atoi(v));
    else usage("unknown flag " + a);
  }
  return o;
}

std::vector<std::string> load_texts(const fs::path& jsonl) {
  std::ifstream in(jsonl);
  if (!in) usage("cannot open " + jsonl.string() + " (scripts/fetch_data.sh writes .data/brown.jsonl)");
  std::vector<std::string> docs;
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) docs.push_back(nlohmann::json::parse(line).at("text").get<std::string>());
  return docs;
}

// Trains <work>/brown_<type>_<vocab>.model unless it exists; returns its path.
fs::path train(const Options& o, const std::vector<std::string>& docs, const std::string& type) {
  const fs::path prefix = o.work / ("brown_" + type + "_" + std::to_string(o.vocab));
  const fs::path model = prefix.string() + ".model";
  if (fs::exists(model)) return model;
  const fs::path text = o.work / "brown.txt";
  {
    std::ofstream out(text);
    for (std::string d : docs) {  // one sentence per line for spm_train
      std::replace(d.begin(), d.end(), '\n', ' ');
      out << d << '\n';
    }
  }
  const std::string cmd = "spm_train --input=" + text.string() + " --model_prefix=" + prefix.string() +
                          " --vocab_size=" + std::to_string(o.vocab) + " --model_type=" + type +
                          " --num_threads=" + std::to_string(o.threads) + " --minloglevel=2 > " + prefix.string() +
                          ".log 2>&1";
  std::printf("training %s (%s) ...\n", model.c_str(), type.c_str());
  std::fflush(stdout);
  const auto t0 = std::chrono::steady_clock::now();
  if (std::system(cmd.c_str()) != 0) usage("spm_train failed (is the Debian package sentencepiece installed?): " + cmd);
  std::printf("  trained in %.1f s\n", std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  return model;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void report(const std::string& what, double bytes, double tokens, double secs) {
  std::printf("  %-44s %8.2f MB/s  %6.2f M tokens/s  (%.3f s)\n", what.c_str(), bytes / secs / 1e6,
              tokens / secs / 1e6, secs);
}

// Best of `passes` single-thread passes; returns {seconds, tokens}.
std::pair<double, size_t> one_thread(const SpmTokenizer& tok, const std::vector<std::string>& docs, int passes) {
  double best = 1e30;
  size_t tokens = 0;
  std::vector<int32_t> ids;
  for (int p = 0; p < passes; ++p) {
    tokens = 0;
    const auto t0 = std::chrono::steady_clock::now();
    for (const auto& d : docs) {
      ids.clear();
      tok.encode(d, ids);
      tokens += ids.size();
    }
    best = std::min(best, seconds_since(t0));
  }
  return {best, tokens};
}

double threads(const SpmTokenizer& tok, const std::vector<std::string>& docs, int n) {
  std::atomic<size_t> next{0};
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<std::thread> pool;
  for (int t = 0; t < n; ++t)
    pool.emplace_back([&] {
      std::vector<int32_t> ids;
      for (size_t i; (i = next.fetch_add(1)) < docs.size();) {
        ids.clear();
        tok.encode(docs[i], ids);
      }
    });
  for (auto& th : pool) th.join();
  return seconds_since(t0);
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  const auto docs = load_texts(o.input);
  double bytes = 0;
  for (const auto& d : docs) bytes += static_cast<double>(d.size());
  fs::create_directories(o.work);
  std::printf("%s: %zu documents, %.2f MB of text\n", o.input.c_str(), docs.size(), bytes / 1e6);
  for (const std::string type : {"bpe", "unigram"}) {
    const fs::path model = train(o, docs, type);
    const SpmTokenizer gpt(MEGAHOST_SPM_SHIM, model.string(), SpmVariant::Gpt);
    const SpmTokenizer megatron(MEGAHOST_SPM_SHIM, model.string(), SpmVariant::Megatron);
    std::printf("%s model, vocab %d:\n", type.c_str(), o.vocab);
    const auto [g_s, g_n] = one_thread(gpt, docs, o.passes);
    std::printf("  %zu tokens (%.2f bytes/token)\n", g_n, bytes / static_cast<double>(g_n));
    report("1 thread, GPTSentencePieceTokenizer", bytes, static_cast<double>(g_n), g_s);
    const auto [m_s, m_n] = one_thread(megatron, docs, o.passes);
    report("1 thread, SentencePieceTokenizer", bytes, static_cast<double>(m_n), m_s);
    report(std::to_string(o.threads) + " threads, one shared instance (GPT)", bytes, static_cast<double>(g_n),
           threads(gpt, docs, o.threads));
  }
  return 0;
}
