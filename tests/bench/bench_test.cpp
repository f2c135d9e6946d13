// `megahost bench`: figures of a tiny CPU run (JSON consistent with itself and with FORMATS.md
// §5), the overrides it forces (no checkpoint, no metrics file), argument errors, and the
// kernel-name groups of --profile.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "kernel_groups.h"

namespace fs = std::filesystem;
using megahost::host::classify_kernel;
using megahost::host::KernelGroup;
using megahost::host::KernelTime;

namespace {

const std::string kMegahost = std::string(MEGAHOST_BINARY_DIR) + "/bin/megahost";
const std::string kGpt2Vocab = std::string(MEGAHOST_FETCHED_DATA_DIR) + "/npm/gpt2/package/encoder.json";
const std::string kBrown = std::string(MEGAHOST_FETCHED_DATA_DIR) + "/brown_text_document.idx";

struct Result {
  int code = -1;
  std::string out;  // stdout + stderr
};

// Runs `megahost bench ARGS` from the repository root (tiny.toml's data paths are relative to it).
Result bench(const std::string& args) {
  Result r;
  const std::string cmd = "cd '" + std::string(MEGAHOST_SOURCE_DIR) + "' && '" + kMegahost + "' bench " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) r.out.append(buf, n);
  const int status = pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

// tiny.toml shrunk further: one layer, 32 wide, 32 tokens, batch 4, one thread.
const std::string kTiny =
    "examples/gpt/tiny.toml --set model.num_layers=1 --set model.hidden_size=32 --set model.num_attention_heads=2 "
    "--set model.seq_length=32 --set model.max_position_embeddings=32 --set training.micro_batch_size=2 "
    "--set training.global_batch_size=4 --set training.num_threads=1";

class BenchDir : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           (std::string("megahost_bench_") + ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

}  // namespace

TEST_F(BenchDir, TinyGptReportsConsistentFigures) {
  if (!fs::exists(kGpt2Vocab) || !fs::exists(kBrown)) GTEST_SKIP() << "run scripts/fetch_data.sh and preprocess Brown";
  const fs::path json = dir_ / "bench.json", ckpt = dir_ / "ckpt", metrics = dir_ / "metrics.jsonl";
  // The recipe's train_iters, checkpoint folder and metrics file are overridden by bench. The
  // device is pinned: on a CUDA build with a GPU the recipe's "auto" would pick the GPU.
  const Result r = bench(kTiny + " --set training.device=cpu --set training.train_iters=1000" +
                         " --set checkpoint.save=" + ckpt.string() +
                         " --set logging.metrics_file=" + metrics.string() +
                         " --warmup 1 --iters 2 --label tiny-cpu --json " + json.string());
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("iteration        3/       3"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\ntiny-cpu "), std::string::npos) << r.out;  // the result line
  EXPECT_NE(r.out.find("MFU(989)="), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(ckpt)) << "bench must not save checkpoints";
  EXPECT_FALSE(fs::exists(metrics)) << "bench must not write the recipe's metrics file";

  std::ifstream in(json);
  ASSERT_TRUE(in.good()) << json;
  const nlohmann::json f = nlohmann::json::parse(in);
  EXPECT_EQ(f["label"], "tiny-cpu");
  EXPECT_EQ(f["device"], "cpu");
  EXPECT_EQ(f["world_size"], 1);
  EXPECT_EQ(f["timed_iters"], 2);
  EXPECT_EQ(f["warmup_iters"], 1);
  EXPECT_EQ(f["global_batch_size"], 4);
  EXPECT_EQ(f["seq_length"], 32);
  EXPECT_EQ(f["padded_vocab_size"], 50304);  // GPT-2's 50257 padded to a multiple of 128
  const double ms = f["ms_per_iter"], lo = f["ms_per_iter_min"], hi = f["ms_per_iter_max"];
  EXPECT_GT(lo, 0);
  EXPECT_LE(lo, ms);
  EXPECT_LE(ms, hi);
  // Every timed iteration in order; their mean is the figure above.
  const std::vector<double> each = f["ms_each_iter"];
  ASSERT_EQ(each.size(), 2u);
  EXPECT_NEAR((each[0] + each[1]) / 2, ms, 1e-9 * ms);
  EXPECT_DOUBLE_EQ(std::min(each[0], each[1]), lo);
  EXPECT_DOUBLE_EQ(std::max(each[0], each[1]), hi);
  EXPECT_DOUBLE_EQ(f["tokens_per_iter"].get<double>(), 4.0 * 32);
  EXPECT_NEAR(f["tokens_per_s"].get<double>(), 4.0 * 32 / (ms / 1e3), 1e-6 * f["tokens_per_s"].get<double>());
  EXPECT_DOUBLE_EQ(f["tokens_per_s_per_gpu"].get<double>(), f["tokens_per_s"].get<double>());
  // FORMATS.md §5: 72 B s l h^2 (1 + s/6h + V/12lh), padded V.
  const double B = 4, s = 32, l = 1, h = 32, V = 50304;
  const double flops = 72 * B * s * l * h * h * (1 + s / (6 * h) + V / (12 * l * h));
  EXPECT_NEAR(f["model_flops_per_iter"].get<double>(), flops, 1e-9 * flops);
  const double tflops = f["tflops_per_gpu"];
  EXPECT_NEAR(tflops, flops / (ms / 1e3) / 1e12, 1e-9 * flops / (ms / 1e3) / 1e12);
  EXPECT_NEAR(f["mfu"].get<double>(), tflops / 989.0, 1e-12);
  EXPECT_EQ(f["peak_memory_kind"], "cpu_max_rss");
  EXPECT_GT(f["peak_memory_bytes"].get<double>(), 1e6);
  EXPECT_TRUE(std::isfinite(f["loss_first"].get<double>()));
  EXPECT_GT(f["loss_last"].get<double>(), 0);
}

TEST_F(BenchDir, TwoProcessesPrintOnceAndDividePerGpu) {
#if !__has_include(<gloo/algorithm.h>)
  // A PyTorch-wheel build (the GPU machine) has no gloo headers, so core has no CPU backend.
  GTEST_SKIP() << "no Gloo in this build: multi-process CPU runs are tested on the Debian build";
#endif
  if (!fs::exists(kGpt2Vocab) || !fs::exists(kBrown)) GTEST_SKIP() << "run scripts/fetch_data.sh and preprocess Brown";
  const fs::path json = dir_ / "bench.json";
  Result r;
  {
    const std::string cmd = "cd '" + std::string(MEGAHOST_SOURCE_DIR) + "' && '" + kMegahost +
                            "' launch --nproc-per-node 2 -- bench " + kTiny +
                            " --warmup 0 --iters 1 --label dp2 --json " + json.string() + " 2>&1";
    FILE* p = popen(cmd.c_str(), "r");
    ASSERT_NE(p, nullptr);
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), p)) > 0) r.out.append(buf, n);
    const int status = pclose(p);
    r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }
  ASSERT_EQ(r.code, 0) << r.out;
  size_t lines = 0;
  for (size_t at = r.out.find("\ndp2 "); at != std::string::npos; at = r.out.find("\ndp2 ", at + 1)) ++lines;
  EXPECT_EQ(lines, 1u) << "rank 0 prints the result line, once\n" << r.out;
  std::ifstream in(json);
  ASSERT_TRUE(in.good()) << json;
  const nlohmann::json f = nlohmann::json::parse(in);
  EXPECT_EQ(f["world_size"], 2);
  EXPECT_EQ(f["timed_iters"], 1);
  EXPECT_DOUBLE_EQ(f["tokens_per_s_per_gpu"].get<double>(), f["tokens_per_s"].get<double>() / 2);
  const double flops = f["model_flops_per_iter"], ms = f["ms_per_iter"];
  EXPECT_NEAR(f["tflops_per_gpu"].get<double>(), flops / (ms / 1e3) / 1e12 / 2, 1e-9 * flops / (ms / 1e3) / 1e12);
}

TEST_F(BenchDir, BadArgumentsFailWithAClearError) {
  struct Case {
    std::string args, says;
    int code;
  };
  const Case cases[] = {
      {"", "missing RECIPE", 2},
      {kTiny + " --iters 0", "--iters 0 must be >= 1", 2},
      {kTiny + " --warmup -1", "--warmup -1 must be >= 0", 2},
      {kTiny + " --peak-tflops 0", "--peak-tflops must be > 0", 2},
      {kTiny + " --iters many", "many", 2},
      {kTiny + " --no-such-flag", "no-such-flag", 2},
      {kTiny + " --json " + (dir_ / "missing" / "b.json").string(), "does not exist", 2},
      {"no/such/recipe.toml --iters 1", "no/such/recipe.toml", 1},
      {kTiny + " --set nosection.key=1", "unknown section", 1},
  };
  for (const Case& c : cases) {
    const Result r = bench(c.args);
    EXPECT_EQ(r.code, c.code) << c.args << "\n" << r.out;
    EXPECT_NE(r.out.find(c.says), std::string::npos) << c.args << "\n" << r.out;
  }
}

TEST_F(BenchDir, ProfileRefusesWithoutCudaKineto) {
  // A CPU libtorch (1.13 here) has no Kineto CUDA activity: refused before training; a CUDA
  // build refuses when the recipe trains on the CPU. Either way the error names --profile.
  const Result r = bench(kTiny + " --set training.device=cpu --warmup 0 --iters 1 --profile");
  EXPECT_NE(r.code, 0) << r.out;
  if (r.out.find("--profile") == std::string::npos && !fs::exists(kBrown))
    GTEST_SKIP() << "a CUDA build checks --profile after loading the data: run scripts/fetch_data.sh";
  EXPECT_NE(r.out.find("--profile"), std::string::npos) << r.out;
}

TEST(KernelGroups, ClassifiesKernelNames) {
  EXPECT_EQ(classify_kernel("sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x128x64_warpgroupsize1x1x1"),
            KernelGroup::kMatmul);
  EXPECT_EQ(classify_kernel("ampere_sgemm_128x64_tn"), KernelGroup::kMatmul);
  EXPECT_EQ(classify_kernel("nvjet_tst_128x256_64x4_1x2_h_bz_coopA_TNN"), KernelGroup::kMatmul);
  EXPECT_EQ(classify_kernel("void cutlass::Kernel2<cutlass_80_tensorop_s1688gemm_128x128_16x5_tn_align4>(Params)"),
            KernelGroup::kMatmul);
  EXPECT_EQ(classify_kernel("void splitKreduce_kernel<32, 16, int, float, float>(cublasSplitKParams<float>)"),
            KernelGroup::kMatmul);
  EXPECT_EQ(classify_kernel("void pytorch_flash::flash_fwd_kernel<Flash_fwd_kernel_traits<64, 128>>(Params)"),
            KernelGroup::kAttention);
  EXPECT_EQ(classify_kernel("fmha_cutlassB_f32_aligned_64x64_k64_sm80(AttentionBackwardKernel<...>::Params)"),
            KernelGroup::kAttention);  // "cutlass" in an attention kernel stays attention
  EXPECT_EQ(classify_kernel("cudnn_generated_fort_native_sdpa_sm90_flash_fprop_wgmma_f16_knob_3"),
            KernelGroup::kAttention);
  EXPECT_EQ(classify_kernel("mh_layernorm_fwd_kernel"), KernelGroup::kFusedMegahost);
  EXPECT_EQ(classify_kernel("void megahost::kernels::mh_bias_gelu<c10::BFloat16>(c10::BFloat16*, long)"),
            KernelGroup::kFusedMegahost);
  EXPECT_EQ(classify_kernel("void ohm_scale_kernel(float*)"), KernelGroup::kOther);  // "mh_" inside a word
  EXPECT_EQ(classify_kernel("ncclDevKernel_AllReduce_Sum_f32_RING_LL(ncclDevKernelArgsStorage<4096ul>)"),
            KernelGroup::kCommunication);
  EXPECT_EQ(classify_kernel("void at::native::(anonymous namespace)::multi_tensor_apply_kernel<...>(...)"),
            KernelGroup::kOptimizer);
  EXPECT_EQ(classify_kernel("void at::native::fused_adamw_kernel<float>(...)"), KernelGroup::kOptimizer);
  EXPECT_EQ(classify_kernel("Memcpy HtoD (Pageable -> Device)"), KernelGroup::kCopy);
  EXPECT_EQ(classify_kernel("Memset (Device)"), KernelGroup::kCopy);
  EXPECT_EQ(classify_kernel("void at::native::vectorized_elementwise_kernel<4, at::native::GeluCUDAKernelImpl>(...)"),
            KernelGroup::kOther);
  EXPECT_EQ(classify_kernel("void at::native::reduce_kernel<512, 1, at::native::ReduceOp<float>>(...)"),
            KernelGroup::kOther);
}

TEST(KernelGroups, TableSumsPerIterationAndRanks) {
  // Over 2 iterations: gemm 6 ms (2 calls), attention 3 ms, elementwise 1 ms -> 10 ms = 5 ms/iteration.
  const std::vector<KernelTime> k = {{"sm90_xmma_gemm_a", 3e6},
                                     {"sm90_xmma_gemm_a", 3e6},
                                     {"flash_fwd_kernel", 3e6},
                                     {"vectorized_elementwise_kernel", 1e6}};
  const std::string t = megahost::host::kernel_time_table(k, /*iterations=*/2, /*top=*/2);
  EXPECT_NE(t.find("3.000 ms/iter   60.0%"), std::string::npos) << t;  // matmuls
  EXPECT_NE(t.find("1.500 ms/iter   30.0%"), std::string::npos) << t;  // attention
  EXPECT_NE(t.find("0.500 ms/iter   10.0%"), std::string::npos) << t;  // the rest
  EXPECT_NE(t.find("5.000 ms/iter  100.0%"), std::string::npos) << t;  // total
  EXPECT_NE(t.find("top 2 kernels"), std::string::npos) << t;
  EXPECT_LT(t.find("sm90_xmma_gemm_a"), t.find("flash_fwd_kernel")) << t;  // ranked by time
  EXPECT_NE(t.find("1.0 calls/iter  sm90_xmma_gemm_a"), std::string::npos) << t;
  EXPECT_EQ(t.find("vectorized_elementwise_kernel"), std::string::npos) << t;  // third: not in the top 2
}

TEST(KernelGroups, IdleIsTheSpanNotCoveredByAnyKernel) {
  using megahost::host::idle_ns;
  EXPECT_EQ(idle_ns({}), 0);
  // [0, 3) and [1, 2) overlap (two streams), then nothing until [5, 6), then [6, 8): 2 ns idle.
  const std::vector<KernelTime> k = {{"a", 3, 0}, {"b", 1, 1}, {"c", 1, 5}, {"d", 2, 6}};
  EXPECT_DOUBLE_EQ(idle_ns(k), 2);
  EXPECT_DOUBLE_EQ(idle_ns({{"late", 1, 10}, {"early", 4, 0}}), 6);  // order does not matter
  EXPECT_LT(idle_ns({{"a", 1, 0}, {"unknown", 1, -1}}), 0);
  const std::string t = megahost::host::kernel_time_table(k, /*iterations=*/2);
  EXPECT_NE(t.find("GPU idle between them (nothing running)"), std::string::npos) << t;
}

TEST(KernelGroups, IdleGapsNameTheKernelsAroundThemAndBucketByLength) {
  using megahost::host::idle_gaps;
  // "a" [0, 3000) covers "b" [1000, 2000); idle 3000 -> 5000 before "c"; "c" [5000, 6000); "d" starts
  // 30 us later. Times in ns.
  const std::vector<KernelTime> k = {{"a", 3000, 0}, {"b", 1000, 1000}, {"c", 1000, 5000}, {"d", 2000, 36000}};
  const auto gaps = idle_gaps(k);
  ASSERT_EQ(gaps.size(), 2u);
  EXPECT_DOUBLE_EQ(gaps[0].ns, 2000);
  EXPECT_EQ(gaps[0].before, "a");  // b ends earlier, inside a
  EXPECT_EQ(gaps[0].after, "c");
  EXPECT_DOUBLE_EQ(gaps[1].ns, 30000);
  EXPECT_EQ(gaps[1].before, "c");
  EXPECT_EQ(gaps[1].after, "d");
  EXPECT_TRUE(idle_gaps({{"a", 1, 0}, {"unknown", 1, -1}}).empty());

  const std::string t = megahost::host::idle_gap_table(k, /*iterations=*/1);
  EXPECT_NE(t.find("2-5 us            1.0 gaps    0.002 ms/iter"), std::string::npos) << t;
  EXPECT_NE(t.find("20-100 us         1.0 gaps    0.030 ms/iter"), std::string::npos) << t;
  EXPECT_LT(t.find("1.0 gaps/iter  d"), t.find("1.0 gaps/iter  c")) << t;  // d waited longest
}
