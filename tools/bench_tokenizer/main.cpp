// bench_tokenizer — encode throughput of the gpt2-bpe tokenizer on the Brown corpus.
//
//   megahost_bench_tokenizer [--brown DIR] [--vocab encoder.json] [--merges vocab.bpe]
//                            [--threads N] [--passes P]
//
// The Brown corpus is tagged ("The/at jury/nn"); tags are stripped and each paragraph becomes
// one document, encoded one call each as preprocessing does. Prints MB/s (of UTF-8 input) and
// tokens/s for: the first pass over a fresh instance (cold piece cache), the best later pass
// (warm cache), BPE without the cache, and N threads sharing one instance.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bpe_tokenizer.h"
#include "pretokenizer.h"

namespace fs = std::filesystem;
using megahost::tokenizers::Gpt2BpeTokenizer;

namespace {

struct Options {
  fs::path brown = fs::path(MEGAHOST_FETCHED_DATA_DIR) / "npm/brown/package";
  fs::path vocab = fs::path(MEGAHOST_FETCHED_DATA_DIR) / "npm/gpt2/package/encoder.json";
  fs::path merges = fs::path(MEGAHOST_FETCHED_DATA_DIR) / "npm/gpt2/package/vocab.bpe";
  int threads = 2;
  int passes = 3;
};

[[noreturn]] void usage(const char* msg) {
  std::fprintf(stderr,
               "error: %s\nusage: megahost_bench_tokenizer [--brown DIR] [--vocab FILE] [--merges FILE] "
               "[--threads N] [--passes P]\n",
               msg);
  std::exit(2);
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) usage(("missing value for " + a).c_str());
    const char* v = argv[++i];
    if (a == "--brown") o.brown = v;
    else if (a == "--vocab") o.vocab = v;
    else if (a == "--merges") o.merges = v;
    else if (a == "--threads") o.threads = std::max(1, std::atoi(v));
    else if (a == "--passes") o.passes = std::max(2, std::atoi(v));
    else usage(("unknown flag " + a).c_str());
  }
  return o;
}

// "The/at jury/nn ./." -> "The jury ." (the tag follows the last '/').
std::string strip_tags(const std::string& line) {
  std::istringstream in(line);
  std::string word, out;
  while (in >> word) {
    const size_t slash = word.rfind('/');
    if (slash != std::string::npos && slash > 0) word.resize(slash);
    if (!out.empty()) out.push_back(' ');
    out += word;
  }
  return out;
}

// Paragraphs of every Brown file (names c??, e.g. ca01), in name order.
std::vector<std::string> load_brown(const fs::path& dir) {
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string n = e.path().filename().string();
    if (n.size() == 4 && n[0] == 'c') files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  std::vector<std::string> docs;
  for (const auto& f : files) {
    std::ifstream in(f);
    std::string line;
    while (std::getline(in, line)) {
      std::string text = strip_tags(line);
      if (!text.empty()) docs.push_back(std::move(text));
    }
  }
  return docs;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

template <typename EncodeDoc>
double time_pass(const std::vector<std::string>& docs, EncodeDoc&& encode_doc) {
  const auto t0 = std::chrono::steady_clock::now();
  for (const auto& d : docs) encode_doc(d);
  return seconds_since(t0);
}

void report(const char* what, double bytes, double tokens, double secs) {
  std::printf("%-34s %8.2f MB/s  %8.2f M tokens/s  (%.3f s)\n", what, bytes / secs / 1e6, tokens / secs / 1e6, secs);
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  if (!fs::is_directory(o.brown)) usage(("no Brown corpus at " + o.brown.string()).c_str());
  const auto docs = load_brown(o.brown);
  double bytes = 0;
  for (const auto& d : docs) bytes += static_cast<double>(d.size());

  auto t_load = std::chrono::steady_clock::now();
  Gpt2BpeTokenizer tok(o.vocab.string(), o.merges.string());
  const double load_s = seconds_since(t_load);

  std::vector<int32_t> ids;
  size_t tokens = 0;
  const double cold = time_pass(docs, [&](const std::string& d) {
    ids.clear();
    tok.encode(d, ids);
    tokens += ids.size();
  });
  double warm = 1e30;
  for (int p = 1; p < o.passes; ++p)
    warm = std::min(warm, time_pass(docs, [&](const std::string& d) {
                      ids.clear();
                      tok.encode(d, ids);
                    }));
  const double uncached = time_pass(docs, [&](const std::string& d) {
    ids.clear();
    megahost::tokenizers::gpt2_split(d, [&](std::string_view piece) { tok.bpe_piece(piece, ids); });
  });

  // N threads sharing the (warm) instance, documents dealt round-robin.
  std::atomic<size_t> next{0};
  const auto t_mt = std::chrono::steady_clock::now();
  std::vector<std::thread> pool;
  for (int t = 0; t < o.threads; ++t)
    pool.emplace_back([&] {
      std::vector<int32_t> local;
      for (size_t i; (i = next.fetch_add(1)) < docs.size();) {
        local.clear();
        tok.encode(docs[i], local);
      }
    });
  for (auto& th : pool) th.join();
  const double mt = seconds_since(t_mt);

  std::printf("Brown corpus: %zu paragraphs, %.2f MB of text, %zu GPT-2 tokens (%.2f bytes/token)\n", docs.size(),
              bytes / 1e6, tokens, bytes / static_cast<double>(tokens));
  std::printf("load encoder.json + vocab.bpe: %.3f s\n", load_s);
  const double n = static_cast<double>(tokens);
  report("1 thread, first pass (cold cache)", bytes, n, cold);
  report("1 thread, warm cache (best)", bytes, n, warm);
  report("1 thread, no cache (BPE always)", bytes, n, uncached);
  const std::string label = std::to_string(o.threads) + " threads, one shared instance";
  report(label.c_str(), bytes, n, mt);
  return 0;
}
