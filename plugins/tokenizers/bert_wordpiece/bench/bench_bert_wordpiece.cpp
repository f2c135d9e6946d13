// bench_bert_wordpiece — single-thread encode throughput of the BERT WordPiece tokenizer on the
// Brown corpus.
//
//   megahost_bench_bert_wordpiece [--brown DIR] [--vocab vocab.txt] [--cased] [--passes P]
//
// Tags are stripped ("The/at jury/nn" -> "The jury") and each paragraph is one document,
// encoded one call each as preprocessing does. Prints MB/s (of UTF-8 input) and tokens/s of the
// best pass. The default vocabulary is the small Brown-built one of tests/data/golden.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "wordpiece_tokenizer.h"

namespace fs = std::filesystem;
using megahost::tokenizers::bert::BertWordPieceTokenizer;

namespace {

struct Options {
  fs::path brown = fs::path(MEGAHOST_FETCHED_DATA_DIR) / "npm/brown/package";
  fs::path vocab;
  bool cased = false;
  int passes = 3;
};

[[noreturn]] void usage(const std::string& msg) {
  std::fprintf(stderr,
               "error: %s\nusage: megahost_bench_bert_wordpiece [--brown DIR] [--vocab FILE] [--cased] "
               "[--passes P]\n",
               msg.c_str());
  std::exit(2);
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--cased") {
      o.cased = true;
      continue;
    }
    if (i + 1 >= argc) usage("missing value for " + a);
    const char* v = argv[++i];
    if (a == "--brown") o.brown = v;
    else if (a == "--vocab") o.vocab = v;
    else if (a == "--passes") o.passes = std::max(1, std::atoi(v));
    else usage("unknown flag " + a);
  }
  if (o.vocab.empty())
    o.vocab = fs::path(MEGAHOST_GOLDEN_DIR) /
              (o.cased ? "bert_wordpiece_cased_vocab.txt" : "bert_wordpiece_uncased_vocab.txt");
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
    for (std::string line; std::getline(in, line);) {
      std::string text = strip_tags(line);
      if (!text.empty()) docs.push_back(std::move(text));
    }
  }
  return docs;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  if (!fs::is_directory(o.brown)) usage("no Brown corpus at " + o.brown.string() + " (scripts/fetch_data.sh)");
  const auto docs = load_brown(o.brown);
  double bytes = 0;
  for (const auto& d : docs) bytes += static_cast<double>(d.size());

  const auto t_load = std::chrono::steady_clock::now();
  const BertWordPieceTokenizer tok(o.vocab.string(), !o.cased);
  const double load_s = seconds_since(t_load);

  std::vector<int32_t> ids;
  size_t tokens = 0;
  double best = 1e30;
  for (int p = 0; p < o.passes; ++p) {
    tokens = 0;
    const auto t0 = std::chrono::steady_clock::now();
    for (const auto& d : docs) {
      ids.clear();
      tok.encode(d, ids);
      tokens += ids.size();
    }
    best = std::min(best, seconds_since(t0));
  }
  std::printf("Brown corpus: %zu paragraphs, %.2f MB of text, %zu WordPiece tokens (%s, vocab %s, %lld ids)\n",
              docs.size(), bytes / 1e6, tokens, o.cased ? "cased" : "lower-case", o.vocab.filename().c_str(),
              static_cast<long long>(tok.vocab_size()));
  std::printf("load vocab: %.3f s\n", load_s);
  std::printf("1 thread, best of %d passes: %.2f MB/s  %.2f M tokens/s  (%.3f s)\n", o.passes, bytes / best / 1e6,
              static_cast<double>(tokens) / best / 1e6, best);
  return 0;
}
