// Throughput of HfTokenizer::encode on the "text" fields of a JSON-lines file, one thread.
//   bench_hf_tokenizer CORPUS.jsonl TOKENIZER_JSON [REPEATS=3]
// Prints MB/s (UTF-8 input bytes) and tokens/s of the best repeat; the first repeat starts
// with a cold piece cache, so it is printed separately.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "hf_tokenizer.h"

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s CORPUS.jsonl TOKENIZER_JSON [REPEATS]\n", argv[0]);
    return 2;
  }
  const int repeats = argc > 3 ? std::max(1, std::atoi(argv[3])) : 3;
  std::vector<std::string> texts;
  size_t bytes = 0;
  std::ifstream in(argv[1]);
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    texts.push_back(nlohmann::json::parse(line).at("text").get<std::string>());
    bytes += texts.back().size();
  }
  if (texts.empty()) {
    std::fprintf(stderr, "no documents in %s\n", argv[1]);
    return 1;
  }
  try {
    using clock = std::chrono::steady_clock;
    auto t0 = clock::now();
    const megahost::hf::HfTokenizer tok(argv[2]);
    const double load_s = std::chrono::duration<double>(clock::now() - t0).count();
    std::printf("%s: %s (loaded in %.2f s)\n", tok.file().c_str(), tok.summary().c_str(), load_s);
    std::vector<int32_t> ids;
    double best = 1e30;
    size_t tokens = 0;
    for (int r = 0; r < repeats; ++r) {
      tokens = 0;
      t0 = clock::now();
      for (const std::string& t : texts) {
        ids.clear();
        tok.encode(t, /*add_special_tokens=*/true, ids);
        tokens += ids.size();
      }
      const double s = std::chrono::duration<double>(clock::now() - t0).count();
      std::printf("repeat %d%s: %.3f s, %.2f MB/s, %.2f M tokens/s\n", r, r == 0 ? " (cold cache)" : "", s,
                  bytes / 1e6 / s, tokens / 1e6 / s);
      best = std::min(best, s);
    }
    std::printf("%zu documents, %.1f MB, %zu tokens; best: %.2f MB/s, %.2f M tokens/s (1 thread)\n", texts.size(),
                bytes / 1e6, tokens, bytes / 1e6 / best, tokens / 1e6 / best);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
