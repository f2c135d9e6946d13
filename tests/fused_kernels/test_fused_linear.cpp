// Fused linear layers (fused::linear, fused::gelu_mlp) against autograd and float64 math:
// gradient-accumulation fusion must leave exactly what autograd's AccumulateGrad would have left
// in the bound main gradient, fire each parameter's grad-ready hook once per backward, and the
// cuBLASLt epilogues (bias + tanh-GeLU, GeLU and bias gradients, float32 accumulation) must match
// float64. The CPU half runs everywhere; the CUDA half needs a GPU.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <torch/csrc/autograd/autograd.h>

#include <cmath>
#include <cstdlib>
#include <memory>
#include <vector>

#include "compare.h"
#include "megahost/sdk/nn/fused.h"
#include "megahost/sdk/nn/params.h"
#include "megahost/sdk/nn/transformer.h"
#include "megahost/sdk/torch_interop.h"

namespace fused = megahost::sdk::fused;
namespace nn = megahost::sdk::nn;
using fused_test::leaf64;

namespace {

// The host's side of bind_storage: parameters keep their storage, gradients land in one flat
// main-gradient buffer of grad_dtype that starts at 0.5 (so "added to" differs from "set").
struct MainGrads {
  at::Tensor flat;
  std::vector<at::Tensor> per_param;
  std::vector<std::unique_ptr<megahost::sdk::DLView>> views;
  std::vector<mh_param_binding> bindings;
  std::vector<int> ready;

  // with_ready = false: bound as the host binds them without overlapped reductions (no callback).
  MainGrads(nn::ParamRegistry& reg, at::ScalarType grad_dtype, bool with_ready = true) {
    flat = at::empty({reg.numel()}, at::TensorOptions().dtype(grad_dtype).device(reg.device()));
    int64_t off = 0;
    for (const auto& p : reg.params()) {
      per_param.push_back(flat.narrow(0, off, p.data.numel()).view(p.data.sizes()));
      views.push_back(std::make_unique<megahost::sdk::DLView>(per_param.back()));
      bindings.push_back({sizeof(mh_param_binding), nullptr, views.back()->get()});
      off += p.data.numel();
    }
    ready.assign(reg.params().size(), 0);
    reg.bind(bindings.data(), bindings.size(), with_ready ? &MainGrads::on_ready : nullptr, with_ready ? this : nullptr);
    flat.fill_(0.5);  // bind copied the registry's zero gradients in
  }
  static void on_ready(void* ctx, size_t i) { static_cast<MainGrads*>(ctx)->ready.at(i)++; }
  // What autograd should have added: the main gradient minus its starting 0.5.
  at::Tensor added(size_t i) const { return per_param.at(i).to(at::kDouble) - 0.5; }
};

at::Tensor gelu_tanh64(const at::Tensor& x) {
  return 0.5 * x * (1.0 + at::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * x.pow(3))));
}

// Runs y = fused::linear(x, w, b) and backward `times` times; compares the bound main gradients
// and x.grad with float64 autograd over the same rounded values.
void check_linear(at::Device device, at::ScalarType dtype, at::ScalarType grad_dtype, bool accumulate, double bound) {
  nn::ParamRegistry reg(device, dtype, 1234);
  at::Tensor w = reg.create("w", {24, 40}, nn::Init::normal(0.2), -1, 0);
  at::Tensor b = reg.create("b", {24}, nn::Init::normal(0.2), -1, MH_PARAM_NO_WEIGHT_DECAY);
  MainGrads main(reg, grad_dtype);
  const auto opts = at::TensorOptions().dtype(dtype).device(device);
  at::Tensor x = at::randn({3, 7, 40}, opts).requires_grad_(true);
  const at::Tensor seed = at::randn({3, 7, 24}, opts);
  at::Tensor w64 = leaf64(w), b64 = leaf64(b), x64 = leaf64(x);
  const int times = 2;
  at::Tensor y;
  for (int t = 0; t < times; ++t) {
    y = fused::linear(x, w, b, accumulate);
    (y * seed).sum().backward();
    (at::linear(x64, w64, b64) * seed.to(at::kCPU).to(at::kDouble)).sum().backward();
  }
  EXPECT_CLOSE(y, at::linear(x64, w64, b64), bound);
  EXPECT_CLOSE(main.added(0), w64.grad(), bound);
  EXPECT_CLOSE(main.added(1), b64.grad(), bound);
  EXPECT_CLOSE(x.grad(), x64.grad(), bound);
  EXPECT_EQ(main.ready, (std::vector<int>{times, times})) << "grad-ready fires once per parameter per backward";
}

// fused::lm_head_cross_entropy twice into a bound main gradient, each backward with its own
// per-row loss gradient (some rows zero: masked tokens), against float64 autograd on the same
// rounded values: the loss, the weight's main gradient, x's gradient, grad-ready once per backward.
void check_lm_head(at::Device device, at::ScalarType dtype, int64_t vocab, double bound) {
  nn::ParamRegistry reg(device, dtype, 77);
  at::Tensor w = reg.create("output", {vocab, 64}, nn::Init::normal(0.3), -1, 0);
  MainGrads main(reg, at::kFloat);
  const auto opts = at::TensorOptions().dtype(dtype).device(device);
  const int64_t rows = 37;
  at::Tensor x = at::randn({rows, 64}, opts).requires_grad_(true);
  const at::Tensor labels = at::randint(0, vocab, {rows}, opts.dtype(at::kLong));
  at::Tensor w64 = leaf64(w), x64 = leaf64(x);
  const at::Tensor labels64 = labels.cpu().unsqueeze(1);
  at::Tensor loss, loss64;
  for (int t = 0; t < 2; ++t) {
    const at::Tensor seed = at::rand({rows}, at::kDouble) * (at::rand({rows}, at::kDouble) > 0.2);
    loss = fused::lm_head_cross_entropy(x, w, labels, /*accumulate_into_grad=*/true);
    (loss * seed.to(device).to(at::kFloat)).sum().backward();
    const at::Tensor logits64 = at::linear(x64, w64);
    loss64 = at::logsumexp(logits64, -1) - logits64.gather(1, labels64).squeeze(1);
    (loss64 * seed).sum().backward();
  }
  EXPECT_EQ(loss.scalar_type(), at::kFloat);
  EXPECT_CLOSE(loss, loss64, bound);
  EXPECT_CLOSE(main.added(0), w64.grad(), bound);
  EXPECT_CLOSE(x.grad(), x64.grad(), bound);
  EXPECT_EQ(main.ready, (std::vector<int>{2})) << "grad-ready fires once per backward";
}

}  // namespace

TEST(FusedLinear, LmHeadCrossEntropyOnCpu) { check_lm_head(at::kCPU, at::kFloat, 100, 1e-5); }

// On the GPU the fused path: the logits overwritten with their gradient in the forward, the
// per-row loss gradient applied to x and to the input gradient in the backward.
TEST(FusedLinear, CudaLmHeadCrossEntropyMatchesFloat64) {
  SKIP_WITHOUT_GPU();
  const at::Device gpu(at::kCUDA, 0);
  // GPT-2's padded vocabulary, a small one, and Llama-3's 128,256: past what a block stages in
  // shared memory, so the kernel reads the rest of each row twice (the targets fall on both sides)
  for (int64_t vocab : {int64_t{50304}, int64_t{1000}, int64_t{128256}}) {
    SCOPED_TRACE(vocab);
    const at::Tensor x = at::empty({3, 64}, at::TensorOptions().dtype(at::kBFloat16).device(gpu));
    const at::Tensor labels = at::zeros({3}, at::TensorOptions().dtype(at::kLong).device(gpu));
    EXPECT_TRUE(fused::lm_head_fuses(x, at::empty({vocab, 64}, x.options()), labels));
    check_lm_head(gpu, at::kBFloat16, vocab, 1e-2);
    check_lm_head(gpu, at::kHalf, vocab, 1e-2);
  }
  check_lm_head(gpu, at::kFloat, 1000, 1e-5);  // not fusable (float32): linear + cross_entropy
}

TEST(FusedLinear, AccumulatesIntoTheBoundGradientOnCpu) {
  check_linear(at::kCPU, at::kFloat, at::kFloat, /*accumulate=*/true, 1e-5);
  check_linear(at::kCPU, at::kFloat, at::kFloat, /*accumulate=*/false, 1e-5);
}

TEST(FusedLinear, WithoutABoundGradientItReturnsTheGradient) {
  // No bind: .grad starts undefined, so the first backward hands autograd the gradient.
  at::Tensor w = (0.2 * at::randn({8, 16})).requires_grad_(true);
  at::Tensor x = at::randn({5, 16}).requires_grad_(true);
  at::Tensor w64 = leaf64(w), x64 = leaf64(x);
  for (int t = 0; t < 2; ++t) {
    fused::linear(x, w, at::Tensor(), true).pow(2).sum().backward();
    at::linear(x64, w64).pow(2).sum().backward();
  }
  EXPECT_CLOSE(w.grad(), w64.grad(), 1e-5);
  EXPECT_CLOSE(x.grad(), x64.grad(), 1e-5);
}

// A tied table as GPT uses it under tensor parallelism (or without the fused embedding): the
// output layer adds its weight gradient into the bound gradient without firing grad-ready, the
// embedding lookup's gradient goes through autograd, whose accumulation (the table's last use in
// backward) fires it once, with both shares in.
TEST(FusedLinear, TiedUseAddsItsShareAndLeavesGradReadyToTheLastUse) {
  nn::ParamRegistry reg(at::kCPU, at::kFloat, 21);
  at::Tensor word = reg.create("word", {30, 16}, nn::Init::normal(0.5), -1, 0);
  MainGrads main(reg, at::kFloat);
  const at::Tensor ids = at::randint(0, 30, {4, 5}), x = at::randn({6, 16});
  const at::Tensor hidden = at::embedding(word, ids);                                       // [4, 5, 16]
  const at::Tensor logits = fused::linear(x, word, at::Tensor(), /*accumulate_into_grad=*/true,
                                          /*notify_grad_ready=*/false);                      // [6, 30]
  ((hidden * hidden).sum() + logits.pow(2).sum()).backward();
  at::Tensor w64 = leaf64(word);
  ((at::embedding(w64, ids).pow(2)).sum() + at::linear(x.to(at::kDouble), w64).pow(2).sum()).backward();
  EXPECT_CLOSE(main.added(0), w64.grad(), 1e-5);
  EXPECT_EQ(main.ready, (std::vector<int>{1}));
}

// zero_grad_deferred (ABI 1.6): the bound gradients keep stale values, yet after the next
// backward each equals a fresh backward's: written through fused::linear (its first write stores),
// through autograd (a pre-hook zeroes before the accumulation), or not at all
// (finish_deferred_zero); a second backward after that adds again.
TEST(FusedLinear, DeferredZeroGradStoresEachGradientsFirstWrite) {
  nn::ParamRegistry reg(at::kCPU, at::kFloat, 31);
  at::Tensor w = reg.create("w", {6, 8}, nn::Init::normal(0.5), -1, 0);
  at::Tensor b = reg.create("b", {6}, nn::Init::normal(0.5), -1, MH_PARAM_NO_WEIGHT_DECAY);
  at::Tensor scale = reg.create("scale", {6}, nn::Init::normal(0.5), -1, 0);
  at::Tensor unused = reg.create("unused", {3}, nn::Init::normal(0.5), -1, 0);
  MainGrads main(reg, at::kFloat);  // every gradient starts at 0.5
  const at::Tensor x = at::randn({5, 8});
  auto backward = [&] { (fused::linear(x, w, b, /*accumulate_into_grad=*/true) * scale).pow(2).sum().backward(); };
  at::Tensor w64 = leaf64(w), b64 = leaf64(b), s64 = leaf64(scale);
  (at::linear(x.to(at::kDouble), w64, b64) * s64).pow(2).sum().backward();
  const std::vector<at::Tensor> want = {w64.grad(), b64.grad(), s64.grad(), at::zeros({3}, at::kDouble)};

  backward();  // stale: 0.5 + one backward
  reg.zero_grad_deferred();
  backward();
  reg.finish_deferred_zero();
  for (size_t i = 0; i < want.size(); ++i) {
    SCOPED_TRACE(reg.params()[i].name);
    EXPECT_CLOSE(main.per_param[i], want[i], 1e-5);
  }
  reg.zero_grad_deferred();
  backward();
  reg.finish_deferred_zero();
  backward();  // not deferred: adds
  for (size_t i = 0; i < want.size(); ++i) {
    SCOPED_TRACE(reg.params()[i].name);
    EXPECT_CLOSE(main.per_param[i], 2 * want[i], 1e-5);
  }
}

TEST(FusedLinear, GeluMlpMatchesItsReferenceOnCpu) {
  nn::ParamRegistry reg(at::kCPU, at::kFloat, 99);
  at::Tensor w1 = reg.create("w1", {64, 32}, nn::Init::normal(0.2), -1, 0);
  at::Tensor b1 = reg.create("b1", {64}, nn::Init::normal(0.2), -1, 0);
  at::Tensor w2 = reg.create("w2", {32, 64}, nn::Init::normal(0.2), -1, 0);
  MainGrads main(reg, at::kFloat);
  at::Tensor x = at::randn({4, 5, 32}).requires_grad_(true);
  at::Tensor x64 = leaf64(x), w164 = leaf64(w1), b164 = leaf64(b1), w264 = leaf64(w2);
  const at::Tensor y = fused::gelu_mlp(x, w1, b1, w2, at::Tensor(), true);
  y.sum().backward();
  const at::Tensor y64 = at::linear(gelu_tanh64(at::linear(x64, w164, b164)), w264);
  y64.sum().backward();
  EXPECT_CLOSE(y, y64, 1e-5);
  EXPECT_CLOSE(fused::reference::gelu_mlp(x, w1, b1, w2, at::Tensor()), y64, 1e-5);
  EXPECT_CLOSE(x.grad(), x64.grad(), 1e-5);
  EXPECT_CLOSE(main.added(0), w164.grad(), 1e-5);
  EXPECT_CLOSE(main.added(1), b164.grad(), 1e-5);
  EXPECT_CLOSE(main.added(2), w264.grad(), 1e-5);
  EXPECT_EQ(main.ready, (std::vector<int>{1, 1, 1}));
}

// linear_add then norm_passthrough, as a layer chains them: the residual added in the product, the
// bias added there too with its gradient left to the norm's pass (bias_grad_elsewhere), the stream
// taking the norm's second output. Output, norm and stream, and every gradient (x, residual, and
// the bound main gradients of w, b and the norm's weight and bias) against float64 autograd of
// r + x w^T + b -> layer_norm. On CUDA in bf16 the product is one cuBLASLt call (beta = 1 over the
// residual, the bias epilogue) and the norm's backward sums the bias's gradient.
void check_linear_add_then_norm(at::Device device, at::ScalarType dtype, double bound) {
  nn::ParamRegistry reg(device, dtype, 4321);
  at::Tensor w = reg.create("w", {32, 48}, nn::Init::normal(0.2), -1, 0);
  at::Tensor b = reg.create("b", {32}, nn::Init::normal(0.2), -1, MH_PARAM_NO_WEIGHT_DECAY);
  at::Tensor lnw = reg.create("ln.weight", {32}, nn::Init::normal(0.5), -1, MH_PARAM_NO_WEIGHT_DECAY);
  at::Tensor lnb = reg.create("ln.bias", {32}, nn::Init::normal(0.2), -1, MH_PARAM_NO_WEIGHT_DECAY);
  MainGrads main(reg, at::kFloat);
  const auto opts = at::TensorOptions().dtype(dtype).device(device);
  at::Tensor x = at::randn({5, 3, 48}, opts).requires_grad_(true);
  at::Tensor r = at::randn({5, 3, 32}, opts).requires_grad_(true);
  const at::Tensor seed_n = at::randn({5, 3, 32}, opts), seed_s = at::randn({5, 3, 32}, opts);
  at::Tensor w64 = leaf64(w), b64 = leaf64(b), lnw64 = leaf64(lnw), lnb64 = leaf64(lnb), x64 = leaf64(x), r64 = leaf64(r);

  const at::Tensor y = fused::linear_add(x, w, b, r, /*accumulate_into_grad=*/true, /*bias_grad_elsewhere=*/true);
  const auto [n, stream] = fused::norm_passthrough(y, lnw, lnb, 1e-5, /*rms=*/false, b);
  ((n * seed_n).sum() + (stream * seed_s).sum()).backward();

  const at::Tensor y64 = r64 + at::linear(x64, w64, b64);
  const at::Tensor n64 = at::layer_norm(y64, {32}, lnw64, lnb64, 1e-5);
  const auto to64 = [](const at::Tensor& t) { return t.to(at::kCPU).to(at::kDouble); };
  ((n64 * to64(seed_n)).sum() + (y64 * to64(seed_s)).sum()).backward();
  EXPECT_CLOSE(y, y64, bound);
  EXPECT_CLOSE(stream, y64, bound);
  EXPECT_CLOSE(n, n64, bound);
  EXPECT_CLOSE(x.grad(), x64.grad(), bound);
  EXPECT_CLOSE(r.grad(), r64.grad(), bound);
  EXPECT_CLOSE(main.added(0), w64.grad(), bound);
  EXPECT_CLOSE(main.added(1), b64.grad(), bound);
  EXPECT_CLOSE(main.added(2), lnw64.grad(), bound);
  EXPECT_CLOSE(main.added(3), lnb64.grad(), bound);
  EXPECT_EQ(main.ready, (std::vector<int>{1, 1, 1, 1})) << "grad-ready once per parameter";
}

TEST(FusedLinear, LinearAddThenNormPassthroughOnCpu) { check_linear_add_then_norm(at::kCPU, at::kFloat, 1e-5); }

TEST(FusedLinear, CudaLinearAddThenNormPassthrough) {
  SKIP_WITHOUT_GPU();
  check_linear_add_then_norm(at::Device(at::kCUDA, 0), at::kFloat, 1e-4);
  check_linear_add_then_norm(at::Device(at::kCUDA, 0), at::kBFloat16, 3e-2);
}

TEST(FusedLinear, CudaAccumulatesBf16GradientsIntoFloat32) {
  SKIP_WITHOUT_GPU();
  const at::Device gpu(at::kCUDA, 0);
  check_linear(gpu, at::kBFloat16, at::kFloat, true, 1e-2);   // cuBLASLt, bias gradient in the epilogue
  check_linear(gpu, at::kFloat, at::kFloat, true, 1e-5);      // addmm_ into .grad
  check_linear(gpu, at::kBFloat16, at::kBFloat16, true, 2e-2);  // bf16 .grad (two bf16 roundings)
}

TEST(FusedLinear, CudaGeluMlpEpiloguesMatchFloat64) {
  SKIP_WITHOUT_GPU();
  for (bool accumulate : {true, false}) {
    const at::Device gpu(at::kCUDA, 0);
    nn::ParamRegistry reg(gpu, at::kBFloat16, 7);
    at::Tensor w1 = reg.create("w1", {1024, 256}, nn::Init::normal(0.05), -1, 0);
    at::Tensor b1 = reg.create("b1", {1024}, nn::Init::normal(0.5), -1, 0);
    at::Tensor w2 = reg.create("w2", {256, 1024}, nn::Init::normal(0.05), -1, 0);
    at::Tensor b2 = reg.create("b2", {256}, nn::Init::normal(0.5), -1, 0);
    MainGrads main(reg, at::kFloat);
    // 4 x 37 = 148 rows: not a multiple of the GEMM tiles
    at::Tensor x = at::randn({4, 37, 256}, at::TensorOptions().dtype(at::kBFloat16).device(gpu)).requires_grad_(true);
    const at::Tensor seed = at::randn({4, 37, 256}, x.options());
    at::Tensor x64 = leaf64(x), w164 = leaf64(w1), b164 = leaf64(b1), w264 = leaf64(w2), b264 = leaf64(b2);
    const at::Tensor y = fused::gelu_mlp(x, w1, b1, w2, b2, accumulate);
    (y * seed).sum().backward();
    const at::Tensor y64 = at::linear(gelu_tanh64(at::linear(x64, w164, b164)), w264, b264);
    (y64 * seed.to(at::kCPU).to(at::kDouble)).sum().backward();
    EXPECT_CLOSE(y, y64, 1e-2);
    EXPECT_CLOSE(x.grad(), x64.grad(), 1e-2);
    EXPECT_CLOSE(main.added(0), w164.grad(), 1e-2);
    EXPECT_CLOSE(main.added(1), b164.grad(), 1e-2);
    EXPECT_CLOSE(main.added(2), w264.grad(), 1e-2);
    EXPECT_CLOSE(main.added(3), b264.grad(), 1e-2);
    EXPECT_EQ(main.ready, (std::vector<int>{1, 1, 1, 1})) << "accumulate " << accumulate;
  }
}

// linear_split (attention's q / k / v): the backward packs the parts' gradients and sums the bias
// gradient in one kernel. Against float64: a part without gradient (zeros), a part whose
// gradient arrives transposed (not in the output's layout), the bias and weight into bound float32
// main gradients (grad-ready once each) and without them (returned to autograd).
TEST(FusedLinear, CudaLinearSplitPacksThePartsGradients) {
  SKIP_WITHOUT_GPU();
  const at::Device gpu(at::kCUDA, 0);
  for (at::ScalarType dtype : {at::kFloat, at::kBFloat16})
  for (bool bound : {true, false}) {
    SCOPED_TRACE(std::string(c10::toString(dtype)) + (bound ? " main gradients" : " returned gradients"));
    nn::ParamRegistry reg(gpu, dtype, 9);
    // groups 3, parts {32, 16, 16}: n = 192 (not a whole strip of 256 vectors)
    at::Tensor w = reg.create("w", {192, 64}, nn::Init::normal(0.1), -1, 0);
    at::Tensor b = reg.create("b", {192}, nn::Init::normal(0.5), -1, 0);
    std::unique_ptr<MainGrads> main;
    if (bound) main = std::make_unique<MainGrads>(reg, at::kFloat);
    at::Tensor x = at::randn({5, 7, 64}, at::TensorOptions().dtype(dtype).device(gpu)).requires_grad_(true);
    const auto parts = fused::linear_split(x, w, b, 3, {32, 16, 16}, /*accumulate_into_grad=*/true);
    ASSERT_EQ(parts.size(), 3u);
    EXPECT_EQ(parts[0].sizes(), (std::vector<int64_t>{5, 7, 3, 32}));
    const at::Tensor s0 = at::randn({7, 5, 3, 32}, at::kDouble), s2 = at::randn({5, 7, 3, 16}, at::kDouble);
    const at::Tensor loss = (parts[0].transpose(0, 1).to(at::kCPU).to(at::kDouble) * s0).sum() +
                            (parts[2].to(at::kCPU).to(at::kDouble) * s2).sum();  // parts[1] unused
    loss.backward();
    at::Tensor x64 = leaf64(x), w64 = leaf64(w), b64 = leaf64(b);
    const auto p64 = at::split_with_sizes(at::linear(x64, w64, b64).view({5, 7, 3, 64}), {32, 16, 16}, -1);
    ((p64[0].transpose(0, 1) * s0).sum() + (p64[2] * s2).sum()).backward();
    const double tol = dtype == at::kFloat ? 1e-4 : 1e-2;
    EXPECT_CLOSE(parts[1], p64[1], tol);
    EXPECT_CLOSE(x.grad(), x64.grad(), tol);
    EXPECT_CLOSE(bound ? main->added(0) : w.grad(), w64.grad(), tol);
    EXPECT_CLOSE(bound ? main->added(1) : b.grad(), b64.grad(), tol);
    if (bound) EXPECT_EQ(main->ready, (std::vector<int>{1, 1}));
  }
}

// GPT's fused input embedding against float64: frequent ids (long runs in the sorted backward),
// the [s, b, h] layout, gradients returned to autograd or added into bound float32 main gradients
// (grad-ready once per table), and a word table that is also the tied output layer: through
// autograd (its accumulation then fires the grad-ready, after both contributions are in) or
// through fused::linear adding its share itself without firing it (GPT's head(): the embedding's
// backward fires it, once).
TEST(FusedLinear, CudaEmbeddingMatchesFloat64) {
  SKIP_WITHOUT_GPU();
  const at::Device gpu(at::kCUDA, 0);
  for (at::ScalarType dtype : {at::kFloat, at::kBFloat16})
  // 0: returned, 1: main gradients, 2: main gradients + tied use through autograd, 3: main
  // gradients + tied use through fused::linear, 4: returned + tied use through fused::linear,
  // 5: as 3 after zero_grad_deferred (the stale 0.5 must not show)
  for (int mode = 0; mode < 6; ++mode) {
    SCOPED_TRACE(std::string(c10::toString(dtype)) + " mode " + std::to_string(mode));
    nn::ParamRegistry reg(gpu, dtype, 11);
    at::Tensor word = reg.create("word", {50, 64}, nn::Init::normal(0.5), -1, 0);
    at::Tensor pos = reg.create("pos", {16, 64}, nn::Init::normal(0.5), -1, 0);
    std::unique_ptr<MainGrads> main;
    const bool bound = (mode >= 1 && mode <= 3) || mode == 5, tied = mode >= 2, fused_tied = mode >= 3,
               deferred = mode == 5;
    if (bound) main = std::make_unique<MainGrads>(reg, at::kFloat);
    if (deferred) reg.zero_grad_deferred();
    const int64_t b = 3, s = 16;
    at::manual_seed(12);
    // ids 0..3 most of the time: runs of ~10 rows; a few others once
    at::Tensor ids = at::where(at::rand({b, s}) < 0.8, at::randint(0, 4, {b, s}), at::randint(0, 50, {b, s}));
    ids = ids.to(gpu);
    const at::Tensor pos_ids = at::arange(s, ids.options()).unsqueeze(0).expand({b, s});
    const at::Tensor out = fused::embedding_sbh(word, ids, pos, pos_ids, /*word_other_use=*/tied && !fused_tied);
    EXPECT_EQ(out.sizes(), (std::vector<int64_t>{s, b, 64}));
    const at::Tensor seed = at::randn({s, b, 64}, at::kDouble), x = at::randn({5, 64}, at::kDouble);
    at::Tensor loss = (out.to(at::kCPU).to(at::kDouble) * seed).sum();
    if (tied) {
      const at::Tensor logits = fused_tied ? fused::linear(x.to(gpu, dtype), word, at::Tensor(), true, false)
                                           : at::linear(x.to(gpu, dtype), word);
      loss = loss + logits.to(at::kCPU).to(at::kDouble).pow(2).sum();
    }
    loss.backward();
    at::Tensor w64 = leaf64(word), p64 = leaf64(pos);
    const at::Tensor ref = (at::embedding(w64, ids.cpu()) + at::embedding(p64, pos_ids.cpu())).transpose(0, 1);
    at::Tensor loss64 = (ref * seed).sum();
    if (tied) loss64 = loss64 + at::linear(x, w64).pow(2).sum();
    loss64.backward();
    if (deferred) reg.finish_deferred_zero();
    const double tol = dtype == at::kFloat ? 1e-5 : 1e-2;
    EXPECT_CLOSE(out, ref, tol);
    auto got = [&](size_t i, const at::Tensor& returned) {
      return deferred ? main->per_param[i].to(at::kDouble) : bound ? main->added(i) : returned;
    };
    EXPECT_CLOSE(got(0, word.grad()), w64.grad(), tol);
    EXPECT_CLOSE(got(1, pos.grad()), p64.grad(), tol);
    if (bound) EXPECT_EQ(main->ready, (std::vector<int>{1, 1}));
  }
}

// The backward sums runs of equal ids in segments of 32 sorted positions: one id taking ~70% of
// 4 x 96 tokens makes a run spanning ~9 segments (its pieces summed by the second pass), others
// end inside a segment or at its edge. Gradients returned and added into float32 main gradients.
TEST(FusedLinear, CudaEmbeddingLongRunsMatchFloat64) {
  SKIP_WITHOUT_GPU();
  const at::Device gpu(at::kCUDA, 0);
  for (at::ScalarType dtype : {at::kFloat, at::kBFloat16})
    for (bool bound : {false, true}) {
      SCOPED_TRACE(std::string(c10::toString(dtype)) + (bound ? " main gradients" : " returned"));
      nn::ParamRegistry reg(gpu, dtype, 13);
      at::Tensor word = reg.create("word", {40, 64}, nn::Init::normal(0.5), -1, 0);
      at::Tensor pos = reg.create("pos", {96, 64}, nn::Init::normal(0.5), -1, 0);
      std::unique_ptr<MainGrads> main;
      if (bound) main = std::make_unique<MainGrads>(reg, at::kFloat);
      const int64_t b = 4, s = 96;
      at::manual_seed(14);
      at::Tensor ids = at::where(at::rand({b, s}) < 0.7, at::zeros({b, s}, at::kLong), at::randint(0, 40, {b, s}));
      ids = ids.to(gpu);
      const at::Tensor pos_ids = at::arange(s, ids.options()).unsqueeze(0).expand({b, s});
      const at::Tensor out = fused::embedding_sbh(word, ids, pos, pos_ids, /*word_other_use=*/false);
      const at::Tensor seed = at::randn({s, b, 64}, at::kDouble);
      (out.to(at::kCPU).to(at::kDouble) * seed).sum().backward();
      at::Tensor w64 = leaf64(word), p64 = leaf64(pos);
      const at::Tensor ref = (at::embedding(w64, ids.cpu()) + at::embedding(p64, pos_ids.cpu())).transpose(0, 1);
      (ref * seed).sum().backward();
      const double tol = dtype == at::kFloat ? 1e-5 : 1e-2;
      EXPECT_CLOSE(bound ? main->added(0) : word.grad(), w64.grad(), tol);
      EXPECT_CLOSE(bound ? main->added(1) : pos.grad(), p64.grad(), tol);
      if (bound) EXPECT_EQ(main->ready, (std::vector<int>{1, 1}));
    }
}

// A GPT block on CUDA takes the fused path: biases of linear_proj / linear_fc2 skipped by their
// GEMMs and added inside the next fused add + norm (whose backward yields their gradients), the
// residual adds deferred, the GeLU MLP on cuBLASLt. It must compute what the plain CPU block
// computes from the same parameters: output and every parameter's gradient. With main_grads, the
// GPU block's gradients are bound to a float32 main-gradient buffer as the host binds them: the
// fused backwards add weights, norm parameters and biases straight into it, and every
// parameter's grad-ready must fire exactly once.
// held: the main gradients bound without a grad-ready callback and the backward inside a
// fused::DeferredColumnSums, so the norms' and biases' column sums wait for its flush().
static void check_block_against_cpu(at::ScalarType dtype, bool main_grads, bool deferred = false, bool held = false) {
  nn::TransformerConfig cfg;
  cfg.num_layers = 2;
  cfg.hidden_size = 64;
  cfg.num_attention_heads = 4;
  cfg.num_query_groups = 4;
  cfg.kv_channels = 16;
  cfg.ffn_hidden_size = 256;
  cfg.gelu_tanh = true;
  cfg.hidden_dropout = cfg.attention_dropout = 0.0;
  nn::ParamRegistry cpu_reg(at::kCPU, at::kFloat, 5), gpu_reg(at::Device(at::kCUDA, 0), dtype, 5);
  nn::TransformerBlock cpu_block(cpu_reg, "decoder", cfg, 0, 2, true), gpu_block(gpu_reg, "decoder", cfg, 0, 2, true);
  ASSERT_EQ(cpu_reg.params().size(), gpu_reg.params().size());
  {
    at::NoGradGuard no_grad;
    for (size_t i = 0; i < cpu_reg.params().size(); ++i) {
      at::Tensor g = gpu_reg.params()[i].data, c = cpu_reg.params()[i].data;
      c.normal_(0.0, 0.2);  // biases too: a zero bias would hide a lost bias gradient
      g.copy_(c);
      c.copy_(g);  // the CPU run sees the GPU's rounded values
    }
  }
  std::unique_ptr<MainGrads> main;
  if (main_grads) main = std::make_unique<MainGrads>(gpu_reg, at::kFloat, /*with_ready=*/!held);
  if (deferred) gpu_reg.zero_grad_deferred();  // the main gradients' 0.5 counts as zero now
  const at::Tensor x = at::randn({16, 3, 64}, at::kFloat);  // [s, b, h]
  const at::Tensor seed = at::randn({16, 3, 64}, at::kFloat);
  const at::Tensor y_cpu = cpu_block.forward(x, at::Tensor(), /*training=*/true);
  (y_cpu * seed).sum().backward();
  const at::Tensor y_gpu = gpu_block.forward(x.to(gpu_reg.device(), dtype), at::Tensor(), /*training=*/true);
  {
    fused::DeferredColumnSums column_sums;
    (y_gpu * seed.to(y_gpu.options())).sum().backward();
    if (held) {
      // Every norm weight's gradient is still the starting 0.5 until the flush.
      int waiting = 0, norms = 0;
      for (size_t i = 0; i < gpu_reg.params().size(); ++i) {
        if (gpu_reg.params()[i].name.find("layernorm.weight") == std::string::npos) continue;
        ++norms;
        waiting += at::all(main->per_param[i] == 0.5).item<bool>() ? 1 : 0;
      }
      EXPECT_GT(norms, 0);
      EXPECT_EQ(waiting, norms) << "the norms' column sums ran before flush()";
      column_sums.flush();
    }
  }
  if (deferred) gpu_reg.finish_deferred_zero();
  const double bound = dtype == at::kFloat ? 1e-4 : 3e-2;
  EXPECT_CLOSE(y_gpu, y_cpu, bound);
  for (size_t i = 0; i < cpu_reg.params().size(); ++i) {
    SCOPED_TRACE(cpu_reg.params()[i].name);
    const at::Tensor g = deferred ? main->per_param[i].to(at::kDouble)
                                  : main ? main->added(i) : gpu_reg.params()[i].data.grad();
    EXPECT_CLOSE(g, cpu_reg.params()[i].data.grad(), bound);
  }
  if (main && !held) EXPECT_EQ(main->ready, std::vector<int>(gpu_reg.params().size(), 1)) << "grad-ready once per parameter";
}

TEST(FusedLinear, CudaTransformerBlockMatchesTheCpuBlock) {
  SKIP_WITHOUT_GPU();
  for (at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    SCOPED_TRACE(c10::toString(dtype));
    check_block_against_cpu(dtype, /*main_grads=*/false);
  }
}

TEST(FusedLinear, CudaTransformerBlockIntoFloat32MainGradients) {
  SKIP_WITHOUT_GPU();
  for (at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    SCOPED_TRACE(c10::toString(dtype));
    check_block_against_cpu(dtype, /*main_grads=*/true);
  }
}

// With MEGAHOST_RESIDUAL_IN_GEMM=1 (read when the block is built): the residual adds inside
// linear_proj's and linear_fc2's products, the norms reading the finished stream (norm_passthrough
// summing the biases' gradients). Same output and gradients as the CPU block.
TEST(FusedLinear, CudaTransformerBlockWithTheResidualInTheProducts) {
  SKIP_WITHOUT_GPU();
  setenv("MEGAHOST_RESIDUAL_IN_GEMM", "1", 1);
  for (at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    SCOPED_TRACE(c10::toString(dtype));
    check_block_against_cpu(dtype, /*main_grads=*/true);
    check_block_against_cpu(dtype, /*main_grads=*/true, /*deferred=*/true);
  }
  unsetenv("MEGAHOST_RESIDUAL_IN_GEMM");
}

// Main gradients without a grad-ready callback (the host without overlapped reductions): the
// column sums that finish the norms' and biases' gradients wait for DeferredColumnSums::flush()
// and then give what the CPU block gives; also after zero_grad_deferred (the held sums store).
TEST(FusedLinear, CudaTransformerBlockWithHeldColumnSums) {
  SKIP_WITHOUT_GPU();
  for (at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    SCOPED_TRACE(c10::toString(dtype));
    check_block_against_cpu(dtype, /*main_grads=*/true, /*deferred=*/false, /*held=*/true);
    check_block_against_cpu(dtype, /*main_grads=*/true, /*deferred=*/true, /*held=*/true);
  }
}

// The same after zero_grad_deferred: the weight-gradient GEMMs store (beta = 0), the column sums
// assign, so the main gradients' stale 0.5 must not show in any of them.
TEST(FusedLinear, CudaTransformerBlockAfterDeferredZeroGrad) {
  SKIP_WITHOUT_GPU();
  for (at::ScalarType dtype : {at::kFloat, at::kBFloat16}) {
    SCOPED_TRACE(c10::toString(dtype));
    check_block_against_cpu(dtype, /*main_grads=*/true, /*deferred=*/true);
  }
}
