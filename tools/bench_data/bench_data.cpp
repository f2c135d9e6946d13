// bench_data — how fast megahost builds Megatron's GPT indices and moves tokens through the
// mmap-indexed format. Prints measurements; asserts nothing.
//
//   bench_data [--sequences 10000000] [--seq-length 2048] [--epochs 2.5] [--blend-samples 10000000]
//              [--file-sequences 1000000] [--file-max-length 100000] [--dir /tmp]
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "megahost/core/data/blend.h"
#include "megahost/core/data/gpt_dataset.h"
#include "megahost/core/data/gpt_indices.h"
#include "mmidx_reader.h"
#include "mmidx_writer.h"

namespace data = megahost::core::data;

namespace {

double now_s() {
  using clock = std::chrono::steady_clock;
  return std::chrono::duration<double>(clock::now().time_since_epoch()).count();
}

// Document lengths roughly like web text: log-normal around a few hundred tokens.
std::vector<int32_t> synthetic_lengths(int64_t n, uint32_t seed, double max_length = 100000.0) {
  std::mt19937 rng(seed);
  std::lognormal_distribution<double> dist(5.5, 1.0);
  std::vector<int32_t> lengths(static_cast<size_t>(n));
  for (auto& l : lengths) l = static_cast<int32_t>(std::min(1.0 + dist(rng), max_length));
  return lengths;
}

// core::data::TokenSource over the format's reader (what the engine's adapter does over the ABI).
class MmidxSource : public data::TokenSource {
 public:
  explicit MmidxSource(const mmidx::Reader& r) : r_(r), lengths_(r.num_sequences()) {
    r.copy_sequence_lengths(0, lengths_.size(), lengths_.data());
  }
  uint64_t num_sequences() const override { return lengths_.size(); }
  const std::vector<int32_t>& sequence_lengths() const override { return lengths_; }
  void read(uint64_t seq, uint64_t offset, uint64_t count, int64_t* out) const override {
    r_.read_tokens(seq, offset, count, out);
  }

 private:
  const mmidx::Reader& r_;
  std::vector<int32_t> lengths_;
};

void bench_indices(int64_t sequences, int64_t seq_length, double epochs) {
  std::printf("== GPT indices: %lld sequences, seq_length %lld\n", static_cast<long long>(sequences),
              static_cast<long long>(seq_length));
  const auto lengths = synthetic_lengths(sequences, 1);
  int64_t tokens = 0;
  for (int32_t l : lengths) tokens += l;
  const auto split = data::split_sequence_ranges("949,50,1", sequences)[0].value();
  int64_t split_tokens = 0;
  for (int64_t i = split.begin; i < split.end; ++i) split_tokens += lengths[static_cast<size_t>(i)];
  data::GPTIndexConfig cfg;
  cfg.seq_length = seq_length;
  cfg.num_samples = static_cast<int64_t>(epochs * static_cast<double>(split_tokens) / static_cast<double>(seq_length));
  cfg.seed = 1234;
  std::printf("corpus %.3f B tokens; train split [%lld, %lld), %lld samples requested\n", tokens / 1e9,
              static_cast<long long>(split.begin), static_cast<long long>(split.end),
              static_cast<long long>(*cfg.num_samples));

  // The pieces one by one, then the whole call.
  double t = now_s();
  const auto plan = data::plan_epochs(split_tokens, cfg, "bench");
  data::NumpyRandomState rng(cfg.seed);
  const auto doc = data::build_document_index(split, plan.num_epochs, plan.separate_last_epoch, rng);
  const double t_doc = now_s() - t;
  t = now_s();
  const auto sample = data::build_sample_index(lengths.data(), doc, cfg, plan);
  const double t_sample = now_s() - t;
  t = now_s();
  const auto shuffle = data::build_shuffle_index(
      plan.separate_last_epoch ? plan.samples_before_last_epoch : plan.num_samples, plan.num_samples, rng);
  const double t_shuffle = now_s() - t;
  std::printf("epochs %lld (separate last: %s), N = %lld samples\n", static_cast<long long>(plan.num_epochs),
              plan.separate_last_epoch ? "yes" : "no", static_cast<long long>(plan.num_samples));
  std::printf("document index  %11zu int32    %7.3f s  (%.1f M entries/s)\n", doc.size(), t_doc,
              doc.size() / t_doc / 1e6);
  std::printf("sample index    %11zu %-8s %7.3f s\n", sample.size() / 2, sample.dtype_name(), t_sample);
  std::printf("shuffle index   %11zu %-8s %7.3f s\n", shuffle.size(), shuffle.dtype_name(), t_shuffle);
  auto bytes = [](const data::IndexArray& a) {
    return static_cast<double>(a.size()) * (a.dtype() == data::IndexArray::DType::Int64 ? 8.0 : 4.0);
  };
  std::printf("memory: %.1f MB\n", (doc.size() * 4.0 + bytes(sample) + bytes(shuffle)) / 1e6);
  t = now_s();
  const auto all = data::build_gpt_indices(lengths, split, cfg, "bench");
  std::printf("build_gpt_indices total: %.3f s\n", now_s() - t);
}

void bench_blend(int64_t samples) {
  std::printf("== blend: %lld samples over 4 sources\n", static_cast<long long>(samples));
  const auto plan = data::plan_blend({0.5, 0.3, 0.15, 0.05}, samples);
  const double t = now_s();
  const auto b = data::build_blend_indices(plan.weights, plan.size);
  std::printf("blend indices: %.3f s (%.1f M samples/s)\n", now_s() - t, plan.size / (now_s() - t) / 1e6);
}

void bench_files(int64_t sequences, const std::string& dir, int64_t seq_length, double max_length) {
  const std::string prefix = dir + "/mh_bench_data_" + std::to_string(::getpid());
  const std::string merged = prefix + "_merged";
  std::printf("== mmap-indexed files: %lld sequences (uint16) under %s\n", static_cast<long long>(sequences),
              dir.c_str());
  const auto lengths = synthetic_lengths(sequences, 2, max_length);
  // Tokens come from a pool generated up front, so only the writer is timed.
  std::vector<int32_t> pool(size_t{1} << 22);
  std::mt19937 rng(3);
  for (auto& x : pool) x = static_cast<int32_t>(rng() % 50257);
  double t = now_s();
  int64_t total = 0;
  {
    mmidx::Writer w(prefix, MH_DTYPE_UINT16);
    size_t at = 0;
    for (int32_t l : lengths) {
      const auto n = static_cast<size_t>(l);
      if (at + n > pool.size()) at = 0;
      w.add_sequence(pool.data() + at, n);
      w.end_document();
      at += n;
      total += l;
    }
    const double t_add = now_s() - t;
    const double t0 = now_s();
    w.finalize();
    std::printf("write: %.3f B tokens in %.3f s (%.0f M tokens/s, %.0f MB/s of .bin), finalize (idx + fsync) %.3f s\n",
                total / 1e9, t_add, total / 1e6 / t_add, total * 2.0 / 1e6 / t_add, now_s() - t0);
  }
  t = now_s();
  {
    mmidx::Writer w(merged, MH_DTYPE_UINT16);
    w.add_dataset(prefix);
    w.add_dataset(prefix);
    w.finalize();
  }
  std::printf("merge two copies: %.3f s (%.0f MB/s of .bin)\n", now_s() - t, 2 * total * 2.0 / 1e6 / (now_s() - t));
  t = now_s();
  const mmidx::Reader r(prefix);
  std::printf("open + validate: %.3f s for %llu sequences\n", now_s() - t,
              static_cast<unsigned long long>(r.num_sequences()));

  const MmidxSource src(r);
  data::GPTIndexConfig cfg;
  cfg.seq_length = seq_length;
  cfg.seed = 1234;
  const data::GPTDataset ds(src, {0, static_cast<int64_t>(src.num_sequences())}, cfg, "bench");
  std::vector<int64_t> text(static_cast<size_t>(ds.sample_length()));
  const int64_t n = std::min<int64_t>(ds.size(), 20000);
  t = now_s();
  int64_t checksum = 0;
  for (int64_t i = 0; i < n; ++i) {
    ds.sample(i, text.data());
    checksum += text[0];
  }
  const double dt = now_s() - t;
  std::printf("GPT samples (shuffled, page cache warm): %lld in %.3f s = %.0f samples/s, %.0f M tokens/s (checksum %lld)\n",
              static_cast<long long>(n), dt, n / dt, n * static_cast<double>(ds.sample_length()) / dt / 1e6,
              static_cast<long long>(checksum));
  for (const auto& p : {prefix, merged}) {
    std::filesystem::remove(p + ".bin");
    std::filesystem::remove(p + ".idx");
  }
}

}  // namespace

int main(int argc, char** argv) {
  int64_t sequences = 10'000'000, seq_length = 2048, file_sequences = 1'000'000, blend_samples = 10'000'000;
  double epochs = 2.5, file_max_length = 100000.0;
  std::string dir = "/tmp";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--sequences") sequences = std::atoll(v.c_str());
    else if (k == "--seq-length") seq_length = std::atoll(v.c_str());
    else if (k == "--epochs") epochs = std::atof(v.c_str());
    else if (k == "--file-sequences") file_sequences = std::atoll(v.c_str());
    else if (k == "--blend-samples") blend_samples = std::atoll(v.c_str());
    else if (k == "--file-max-length") file_max_length = std::atof(v.c_str());
    else if (k == "--dir") dir = v;
    else {
      std::fprintf(stderr, "unknown option %s\n", k.c_str());
      return 2;
    }
  }
  bench_indices(sequences, seq_length, epochs);
  bench_blend(blend_samples);
  if (file_sequences > 0) bench_files(file_sequences, dir, seq_length, file_max_length);
  return 0;
}
