// megahost-bench-model — times a model plugin's forward_backward and forward_loss on random
// tokens, created through the core exactly as `megahost run` creates it. Prints ms/iter,
// tokens/s and achieved TFLOP/s (Megatron's count: 72 B s l h^2 (1 + s/6h + V/12lh)).
//
//   megahost-bench-model [--layers=2] [--hidden=128] [--heads=4] [--seq=128] [--batch=4]
//                        [--vocab=1024] [--iters=20] [--warmup=3] [--threads=N] [--llama]
//                        [--device=cpu|cuda] [--plugin=gpt]
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include "megahost/core/config.h"
#include "megahost/core/instances.h"
#include "megahost/core/plugins.h"

namespace core = megahost::core;

namespace {

std::map<std::string, std::string> parse_args(int argc, char** argv) {
  std::map<std::string, std::string> out;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--", 0) != 0) continue;
    const size_t eq = a.find('=');
    out[a.substr(2, eq == std::string::npos ? std::string::npos : eq - 2)] =
        eq == std::string::npos ? "1" : a.substr(eq + 1);
  }
  return out;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

template <typename F>
std::vector<double> time_ms(int warmup, int iters, bool cuda, F&& f) {
  std::vector<double> out;
  for (int i = 0; i < warmup + iters; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    if (cuda) at::empty({1}, at::kCUDA).cpu();  // waits for the queued work
    const auto t1 = std::chrono::steady_clock::now();
    if (i >= warmup) out.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  auto args = parse_args(argc, argv);
  auto get = [&](const char* k, long def) { return args.count(k) ? std::atol(args[k].c_str()) : def; };
  const long layers = get("layers", 2), hidden = get("hidden", 128), heads = get("heads", 4), seq = get("seq", 128),
             batch = get("batch", 4), vocab = get("vocab", 1024), iters = get("iters", 20), warmup = get("warmup", 3);
  const bool llama = args.count("llama") != 0;
  const bool cuda = args.count("device") && args["device"] == "cuda";
  if (args.count("threads")) at::set_num_threads(static_cast<int>(get("threads", 1)));

  std::string toml = "num_layers = " + std::to_string(layers) + "\nhidden_size = " + std::to_string(hidden) +
                     "\nnum_attention_heads = " + std::to_string(heads) + "\nseq_length = " + std::to_string(seq) +
                     "\nhidden_dropout = 0.0\nattention_dropout = 0.0\n";
  if (llama)
    toml += "position_embedding_type = \"rope\"\nnormalization = \"RMSNorm\"\nswiglu = true\nffn_hidden_size = " +
            std::to_string(4 * hidden) + "\nadd_bias_linear = false\nuntie_embeddings_and_output_weights = true\n";
  try {
    const core::PluginRegistry reg(core::PluginRegistry::default_search_path());
    core::ModelOptions opts;
    opts.padded_vocab_size = vocab;
    if (cuda) opts.device = {kDLCUDA, 0};
    auto model = core::create_model(reg, args.count("plugin") ? args["plugin"] : "gpt",
                                    core::parse_config_section(toml, "bench", "model"), opts);
    int64_t n_params = 0;
    for (const auto& p : model->params()) n_params += p.data.numel();

    const at::Device dev = cuda ? at::Device(at::kCUDA, 0) : at::Device(at::kCPU);
    at::Generator gen = at::detail::createCPUGenerator(1);
    const std::vector<std::pair<std::string, at::Tensor>> b = {
        {"tokens", at::randint(vocab, {batch, seq}, gen, at::kLong).to(dev)},
        {"labels", at::randint(vocab, {batch, seq}, gen, at::kLong).to(dev)},
        {"loss_mask", at::ones({batch, seq}, at::kFloat).to(dev)}};
    model->set_training(true);
    const auto fb = time_ms(warmup, iters, cuda, [&] {
      model->zero_grad();
      model->forward_backward(b, 1.0);
    });
    const auto fl = time_ms(warmup, iters, cuda, [&] { model->forward_loss(b); });

    const double B = batch, s = seq, l = layers, h = hidden, V = vocab;
    const double flops = 72.0 * B * s * l * h * h * (1.0 + s / (6.0 * h) + V / (12.0 * l * h));
    const double fb_ms = median(fb), fl_ms = median(fl);
    std::printf("model %s  layers %ld  hidden %ld  heads %ld  seq %ld  batch %ld  vocab %ld  params %.3fM  device %s"
                "  threads %d\n",
                llama ? "llama-style" : "gpt-style", layers, hidden, heads, seq, batch, vocab, n_params / 1e6,
                cuda ? "cuda" : "cpu", at::get_num_threads());
    std::printf("forward+backward  median %.2f ms  min %.2f ms  (%ld iters)  %.0f tokens/s  %.3f TFLOP/s\n", fb_ms,
                *std::min_element(fb.begin(), fb.end()), iters, B * s / (fb_ms / 1e3), flops / (fb_ms / 1e3) / 1e12);
    std::printf("forward (no grad) median %.2f ms  min %.2f ms\n", fl_ms, *std::min_element(fl.begin(), fl.end()));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "megahost-bench-model: %s\n", e.what());
    return 1;
  }
  return 0;
}
