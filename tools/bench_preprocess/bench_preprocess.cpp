// megahost-bench-preprocess — `megahost preprocess` (core::preprocess) on a JSON lines input
// repeated N times into a temporary file, so that the corpus can be made large; prints MB/s,
// tokens/s, documents/s and the process's peak RSS (getrusage ru_maxrss).
//
//   megahost-bench-preprocess [--input .data/brown.jsonl] [--repeat 10] [--workers 2]
//       [--tokenizer-type GPT2BPETokenizer] [--vocab-file F] [--merge-file F] [--no-eod]
//       [--compress none|gzip|zstd] [--split-sentences] [--tmp /tmp]
//
// GPT-2 files default to .data/npm/gpt2/package (scripts/fetch_data.sh). The repeated input and
// the outputs are deleted at the end. --compress pipes the repeated input through the gzip /
// zstd command line tools first (their time is not counted).
#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "megahost/core/plugins.h"
#include "megahost/core/preprocess.h"

namespace core = megahost::core;
namespace fs = std::filesystem;

namespace {

double cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

double peak_rss_mb() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) / 1024.0;  // Linux: kilobytes
}

int usage() {
  std::fprintf(stderr,
               "usage: megahost-bench-preprocess [--input FILE] [--repeat N] [--workers N] [--tokenizer-type T]\n"
               "         [--vocab-file F] [--merge-file F] [--no-eod] [--compress none|gzip|zstd]\n"
               "         [--split-sentences] [--tmp DIR]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string data = MEGAHOST_SOURCE_DIR "/.data";
  std::string input = data + "/brown.jsonl", compress = "none", tmp = "/tmp";
  int repeat = 10;
  core::PreprocessOptions o;
  o.tokenizer_type = "GPT2BPETokenizer";
  o.append_eod = true;
  o.workers = 2;
  o.log_interval = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) std::exit(usage());
      return argv[++i];
    };
    if (a == "--input") input = value();
    else if (a == "--repeat") repeat = std::atoi(value().c_str());
    else if (a == "--workers") o.workers = std::atoi(value().c_str());
    else if (a == "--tokenizer-type") o.tokenizer_type = value();
    else if (a == "--vocab-file") o.vocab_file = value();
    else if (a == "--merge-file") o.merge_file = value();
    else if (a == "--no-eod") o.append_eod = false;
    else if (a == "--compress") compress = value();
    else if (a == "--split-sentences") o.split_sentences = true;
    else if (a == "--tmp") tmp = value();
    else return usage();
  }
  if (o.tokenizer_type == "GPT2BPETokenizer" && o.vocab_file.empty()) {
    o.vocab_file = data + "/npm/gpt2/package/encoder.json";
    o.merge_file = data + "/npm/gpt2/package/vocab.bpe";
  }
  if (repeat < 1 || (compress != "none" && compress != "gzip" && compress != "zstd")) return usage();
  try {
    // The input, repeated, streamed into a temporary file (never held in memory).
    const fs::path dir = fs::path(tmp) / ("megahost_bench_preprocess_" + std::to_string(getpid()));
    fs::create_directories(dir);
    std::string repeated = (dir / "input.jsonl").string();
    {
      std::ofstream out(repeated, std::ios::binary);
      std::vector<char> buf(size_t{1} << 20);
      for (int r = 0; r < repeat; ++r) {
        std::ifstream in(input, std::ios::binary);
        if (!in) throw std::runtime_error(input + ": cannot open (run scripts/fetch_data.sh for .data/)");
        while (in.read(buf.data(), static_cast<std::streamsize>(buf.size())) || in.gcount() > 0)
          out.write(buf.data(), in.gcount());
      }
      if (!out) throw std::runtime_error(repeated + ": write failed");
    }
    const double plain_mb = static_cast<double>(fs::file_size(repeated)) / 1e6;
    if (compress != "none") {
      const std::string cmd = compress == "gzip" ? "gzip -f -6 " + repeated : "zstd -q -f --rm -3 " + repeated;
      if (std::system(cmd.c_str()) != 0) throw std::runtime_error("failed: " + cmd);
      repeated += compress == "gzip" ? ".gz" : ".zst";
    }
    o.inputs = {repeated};
    o.output_prefix = (dir / "out").string();

    core::PluginRegistry reg(core::PluginRegistry::default_search_path());
    const double rss_before = peak_rss_mb();
    const double cpu0 = cpu_seconds();
    const core::PreprocessStats s = core::preprocess(o, reg);
    const double cpu = cpu_seconds() - cpu0;
    const double rss_after = peak_rss_mb();
    std::printf("input        %s x %d = %.1f MB JSONL (%s, %.1f MB on disk)\n", input.c_str(), repeat, plain_mb,
                compress.c_str(), static_cast<double>(fs::file_size(repeated)) / 1e6);
    std::printf("tokenizer    %s, %d workers, append_eod %d, split_sentences %d\n", o.tokenizer_type.c_str(),
                o.workers, o.append_eod ? 1 : 0, o.split_sentences ? 1 : 0);
    std::printf("documents    %lld (%.0f documents/s)\n", static_cast<long long>(s.documents), s.documents / s.seconds);
    std::printf("tokens       %lld (%.2f M tokens/s)\n", static_cast<long long>(s.tokens), s.tokens / s.seconds / 1e6);
    std::printf("throughput   %.2f MB/s (%.2f s wall; %.2f s CPU = %.2f MB per CPU second)\n",
                s.bytes / 1e6 / s.seconds, s.seconds, cpu, s.bytes / 1e6 / cpu);
    std::printf("peak RSS     %.0f MB (%.0f MB before preprocessing: plugins and libraries)\n", rss_after,
                rss_before);
    // File by file: remove_all misbehaves with some libtorch builds.
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(dir)) files.push_back(e.path());
    for (const auto& f : files) fs::remove(f);
    fs::remove(dir);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
