// AdamW and SGD plugins against torch::optim::AdamW / SGD, weight-decay flags, and the state
// round trip through visit_state that checkpoints rely on.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <set>
#include <tuple>

#include "megahost/core/error.h"
#include "megahost/core/instances.h"
#include "megahost/core/plugins.h"
#include "megahost/sdk/compat.h"
#include "megahost/sdk/float8.h"
#include "megahost/sdk/param_remainders.h"
#include "megahost/sdk/stochastic_round.h"
#include "megahost/sdk/torch_interop.h"
#include "load_only.h"
#include "params.h"

namespace {

using megahost::core::Model;
using megahost::core::Optimizer;
using megahost::core::PluginRegistry;
using megahost::test::Params;
using megahost::test::random_params;

const PluginRegistry& registry() {
  static const auto reg = megahost::test::load_only({MH_TEST_PLUGIN_FILE});
  return *reg;
}

std::unique_ptr<Optimizer> make_optimizer(const std::string& id, const std::string& toml = "",
                                          DLDevice device = {kDLCPU, 0}) {
  auto cfg = megahost::core::parse_config_section(toml, "test.toml", "optimizer");
  // The host's own key that the plugin reads too (bf16 moments need it, as in Megatron).
  return megahost::core::create_optimizer(registry(), id, cfg, device, {"use_precision_aware_optimizer"});
}

// Reference copies as leaf tensors for torch::optim.
std::vector<at::Tensor> reference_copies(const Params& p) {
  std::vector<at::Tensor> out;
  for (const auto& t : p.data) out.push_back(t.detach().clone().requires_grad_(true));
  return out;
}

double max_abs_diff(const std::vector<at::Tensor>& a, const std::vector<at::Tensor>& b) {
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, (a[i].detach().cpu().to(at::kDouble) -
                                                           b[i].detach().cpu().to(at::kDouble)).abs().max().item<double>());
  return m;
}

// Fills the live gradients with fresh noise and hands the same values to the reference.
void next_grads(Params& p, std::vector<at::Tensor>& ref) {
  for (size_t i = 0; i < p.grad.size(); ++i) {
    p.grad[i].copy_(torch::randn_like(p.grad[i]));
    ref[i].mutable_grad() = p.grad[i].clone();
  }
}

template <typename Options>
std::vector<torch::optim::OptimizerParamGroup> two_groups(const Params& p, const std::vector<at::Tensor>& ref,
                                                          Options decay, Options no_decay) {
  std::vector<at::Tensor> a, b;
  for (size_t i = 0; i < ref.size(); ++i) (p.flags[i] & MH_PARAM_NO_WEIGHT_DECAY ? b : a).push_back(ref[i]);
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(a, std::make_unique<Options>(decay));
  groups.emplace_back(b, std::make_unique<Options>(no_decay));
  return groups;
}

void run_adamw_against_torch(at::TensorOptions opts) {
  Params p = random_params(1, opts);
  auto ref = reference_copies(p);
  const double wd = 0.1;
  auto decay = torch::optim::AdamWOptions(0.01).betas({0.9, 0.95}).eps(1e-8).weight_decay(wd);
  auto no_decay = torch::optim::AdamWOptions(0.01).betas({0.9, 0.95}).eps(1e-8).weight_decay(0.0);
  torch::optim::AdamW torch_opt(two_groups(p, ref, decay, no_decay));

  auto opt = make_optimizer("adamw", "adam_beta1 = 0.9\nadam_beta2 = 0.95\nadam_eps = 1e-8\n");
  opt->setup(*p.abi);
  for (int step = 1; step <= 20; ++step) {
    const double lr = 0.01 * (1.0 - step / 40.0);  // a decaying schedule, as the host passes it
    for (auto& g : torch_opt.param_groups()) static_cast<torch::optim::AdamWOptions&>(g.options()).lr(lr);
    next_grads(p, ref);
    torch_opt.step();
    opt->step(*p.abi, lr, wd, step);
    ASSERT_LE(max_abs_diff(p.data, ref), 1e-6) << "step " << step;
  }
}

TEST(AdamW, MatchesTorchAdamWOver20Steps) { run_adamw_against_torch(at::kFloat); }

TEST(AdamW, MatchesTorchAdamWOnCuda) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  run_adamw_against_torch(at::TensorOptions().dtype(at::kFloat).device(at::kCUDA, 0));
}

TEST(AdamW, DefaultsAreMegatrons) {
  // No keys: beta1 0.9, beta2 0.999, eps 1e-8, like torch's AdamW defaults.
  Params p = random_params(2);
  auto ref = reference_copies(p);
  torch::optim::AdamW torch_opt(ref, torch::optim::AdamWOptions(1e-3).weight_decay(0.0));
  auto opt = make_optimizer("adam");  // Megatron's --optimizer adam is this AdamW
  opt->setup(*p.abi);
  for (int step = 1; step <= 3; ++step) {
    next_grads(p, ref);
    torch_opt.step();
    opt->step(*p.abi, 1e-3, 0.0, step);
  }
  EXPECT_LE(max_abs_diff(p.data, ref), 1e-6);
}

TEST(AdamW, Bfloat16ParamsMatchAnFp32UpdateRoundedEachStep) {
  Params p = random_params(3, at::kBFloat16);
  std::vector<at::Tensor> ref;
  for (const auto& t : p.data) ref.push_back(t.to(at::kFloat).requires_grad_(true));
  torch::optim::AdamW torch_opt(ref, torch::optim::AdamWOptions(0.01).weight_decay(0.0));
  auto opt = make_optimizer("adamw");
  opt->setup(*p.abi);
  for (int step = 1; step <= 5; ++step) {
    for (size_t i = 0; i < p.grad.size(); ++i) {
      p.grad[i].copy_(torch::randn_like(p.grad[i]));
      ref[i].mutable_grad() = p.grad[i].to(at::kFloat);
    }
    torch_opt.step();
    torch::NoGradGuard no_grad;
    for (auto& r : ref) r.copy_(r.to(at::kBFloat16).to(at::kFloat));
    opt->step(*p.abi, 0.01, 0.0, step);
    ASSERT_EQ(max_abs_diff(p.data, ref), 0.0) << "step " << step;
  }
}

void run_sgd_against_torch(double momentum) {
  Params p = random_params(4);
  auto ref = reference_copies(p);
  const double wd = 0.05;
  auto decay = torch::optim::SGDOptions(0.1).momentum(momentum).weight_decay(wd);
  auto no_decay = torch::optim::SGDOptions(0.1).momentum(momentum).weight_decay(0.0);
  torch::optim::SGD torch_opt(two_groups(p, ref, decay, no_decay), decay);
  auto opt = make_optimizer("sgd", "sgd_momentum = " + std::to_string(momentum) + "\n");
  opt->setup(*p.abi);
  for (int step = 1; step <= 20; ++step) {
    const double lr = 0.1 / step;
    for (auto& g : torch_opt.param_groups()) static_cast<torch::optim::SGDOptions&>(g.options()).lr(lr);
    next_grads(p, ref);
    torch_opt.step();
    opt->step(*p.abi, lr, wd, step);
    ASSERT_LE(max_abs_diff(p.data, ref), 1e-6) << "step " << step;
  }
}

TEST(SGD, MatchesTorchSGDWithMomentumOver20Steps) { run_sgd_against_torch(0.9); }
TEST(SGD, MatchesTorchSGDWithoutMomentum) { run_sgd_against_torch(0.0); }

// With zero gradients only weight decay moves a parameter: flagged ones must not move at all.
void check_no_decay_flag(const std::string& id, double expected_factor) {
  Params p = random_params(5);
  std::vector<at::Tensor> before;
  for (const auto& t : p.data) before.push_back(t.clone());
  auto opt = make_optimizer(id, id == "sgd" ? "sgd_momentum = 0.0\n" : "");
  opt->setup(*p.abi);
  opt->step(*p.abi, /*lr=*/0.1, /*weight_decay=*/0.5, 1);
  for (size_t i = 0; i < p.data.size(); ++i) {
    if (p.flags[i] & MH_PARAM_NO_WEIGHT_DECAY) {
      EXPECT_TRUE(torch::equal(p.data[i], before[i])) << p.names[i] << " is flagged no-weight-decay but changed";
    } else {
      EXPECT_TRUE(torch::allclose(p.data[i], before[i] * expected_factor, 1e-6, 1e-7)) << p.names[i];
    }
  }
}

TEST(AdamW, SkipsWeightDecayForFlaggedParams) { check_no_decay_flag("adamw", 1 - 0.1 * 0.5); }
TEST(SGD, SkipsWeightDecayForFlaggedParams) { check_no_decay_flag("sgd", 1 - 0.1 * 0.5); }

// Copies every state tensor out, by name.
std::map<std::string, at::Tensor> save_state(Optimizer& opt, const Params& p) {
  std::map<std::string, at::Tensor> out;
  opt.visit_state(*p.abi, [&](const std::string& name, at::Tensor t) {
    EXPECT_EQ(out.count(name), 0u) << "duplicate state name " << name;
    out[name] = t.clone();
  });
  return out;
}

void check_state_round_trip(const std::string& id, const std::vector<std::string>& per_param_state) {
  Params a = random_params(6);
  auto opt_a = make_optimizer(id);
  opt_a->setup(*a.abi);
  std::vector<at::Tensor> unused = reference_copies(a);
  for (int step = 1; step <= 5; ++step) {
    next_grads(a, unused);
    opt_a->step(*a.abi, 0.01, 0.1, step);
  }
  auto saved = save_state(*opt_a, a);

  // The names a checkpoint stores: "<param>.<state>" for every param, plus "step".
  std::set<std::string> expected = {"step"};
  for (const auto& n : a.names)
    for (const auto& s : per_param_state) expected.insert(n + "." + s);
  std::set<std::string> got;
  for (const auto& [name, t] : saved) got.insert(name);
  EXPECT_EQ(got, expected);
  EXPECT_EQ(saved.at("step").dtype(), at::kLong);
  EXPECT_EQ(saved.at("step").item<int64_t>(), 5);

  // A fresh optimizer over a copy of the params, restored by writing into its live state.
  Params b = random_params(6);
  for (size_t i = 0; i < b.data.size(); ++i) b.data[i].copy_(a.data[i]);
  auto opt_b = make_optimizer(id);
  opt_b->setup(*b.abi);
  opt_b->visit_state(*b.abi, [&](const std::string& name, at::Tensor t) { t.copy_(saved.at(name)); });

  for (size_t i = 0; i < a.grad.size(); ++i) {
    a.grad[i].copy_(torch::randn_like(a.grad[i]));
    b.grad[i].copy_(a.grad[i]);
  }
  opt_a->step(*a.abi, 0.01, 0.1, 6);
  opt_b->step(*b.abi, 0.01, 0.1, 6);
  for (size_t i = 0; i < a.data.size(); ++i) EXPECT_TRUE(torch::equal(a.data[i], b.data[i])) << a.names[i];
  auto state_a = save_state(*opt_a, a), state_b = save_state(*opt_b, b);
  for (const auto& [name, t] : state_a) EXPECT_TRUE(torch::equal(t, state_b.at(name))) << name;
}

TEST(AdamW, StateRoundTripsThroughVisitState) { check_state_round_trip("adamw", {"exp_avg", "exp_avg_sq"}); }
TEST(SGD, StateRoundTripsThroughVisitState) { check_state_round_trip("sgd", {"momentum_buffer"}); }

// ABI 1.7: a float32 [1] grad_scale_tensor multiplies the gradients as grad_scale does: the same
// update, bit for bit, as passing its value as grad_scale (and both differ from no scale).
void check_grad_scale_tensor(const std::string& id) {
  Params a = random_params(8), b = random_params(8), c = random_params(8);
  for (size_t i = 0; i < a.data.size(); ++i) {
    b.data[i].copy_(a.data[i]);
    c.data[i].copy_(a.data[i]);
  }
  auto opt_a = make_optimizer(id), opt_b = make_optimizer(id), opt_c = make_optimizer(id);
  opt_a->setup(*a.abi);
  opt_b->setup(*b.abi);
  opt_c->setup(*c.abi);
  ASSERT_TRUE(opt_b->applies_grad_scale_tensor());
  for (int step = 1; step <= 3; ++step) {
    for (size_t i = 0; i < a.grad.size(); ++i) {
      a.grad[i].copy_(torch::randn_like(a.grad[i]));
      b.grad[i].copy_(a.grad[i]);
      c.grad[i].copy_(a.grad[i]);
    }
    opt_a->step(*a.abi, 0.01, 0.1, step, /*grad_scale=*/0.375);
    opt_b->step(*b.abi, 0.01, 0.1, step, 1.0, torch::full({1}, 0.375f));
    opt_c->step(*c.abi, 0.01, 0.1, step);
  }
  bool scale_mattered = false;  // AdamW's update hardly depends on it, its moments do
  for (size_t i = 0; i < a.data.size(); ++i) {
    EXPECT_TRUE(torch::equal(a.data[i], b.data[i])) << a.names[i];
    scale_mattered |= !torch::equal(a.data[i], c.data[i]);
  }
  auto state_a = save_state(*opt_a, a), state_b = save_state(*opt_b, b), state_c = save_state(*opt_c, c);
  for (const auto& [name, t] : state_a) {
    EXPECT_TRUE(torch::equal(t, state_b.at(name))) << name;
    scale_mattered |= !torch::equal(t, state_c.at(name));
  }
  EXPECT_TRUE(scale_mattered);
}

TEST(AdamW, GradScaleTensorEqualsGradScale) { check_grad_scale_tensor("adamw"); }
TEST(SGD, GradScaleTensorEqualsGradScale) { check_grad_scale_tensor("sgd"); }

std::string error_of(const std::function<void()>& f);

// ABI 1.9: a step split into consecutive parameter ranges is the whole step, bit for bit: the same
// parameters and state after three steps, and the step counter (bias correction) counted once.
void check_step_in_ranges(const std::string& id) {
  Params a = random_params(11), b = random_params(11);
  for (size_t i = 0; i < a.data.size(); ++i) b.data[i].copy_(a.data[i]);
  const size_t n = a.data.size();
  ASSERT_GE(n, 3u);
  auto opt_a = make_optimizer(id), opt_b = make_optimizer(id);
  opt_a->setup(*a.abi);
  opt_b->setup(*b.abi);
  ASSERT_TRUE(opt_b->updates_param_ranges());
  for (int step = 1; step <= 3; ++step) {
    for (size_t i = 0; i < n; ++i) {
      a.grad[i].copy_(torch::randn_like(a.grad[i]));
      b.grad[i].copy_(a.grad[i]);
    }
    opt_a->step(*a.abi, 0.01, 0.1, step, 0.5);
    opt_b->step(*b.abi, 0.01, 0.1, step, 0.5, {}, {0, 1});
    opt_b->step(*b.abi, 0.01, 0.1, step, 0.5, {}, {1, n - 2});
    opt_b->step(*b.abi, 0.01, 0.1, step, 0.5, {}, {n - 1, 1});
  }
  for (size_t i = 0; i < n; ++i) EXPECT_TRUE(torch::equal(a.data[i], b.data[i])) << a.names[i];
  auto state_a = save_state(*opt_a, a), state_b = save_state(*opt_b, b);
  for (const auto& [name, t] : state_a) EXPECT_TRUE(torch::equal(t, state_b.at(name))) << name;
  EXPECT_EQ(state_b.at("step").item<int64_t>(), 3);
  // A range that does not continue the previous one is refused, and says how to split.
  opt_b->step(*b.abi, 0.01, 0.1, 4, 1.0, {}, {0, 1});
  const std::string msg = error_of([&] { opt_b->step(*b.abi, 0.01, 0.1, 4, 1.0, {}, {2, 1}); });
  EXPECT_NE(msg.find("consecutive ranges"), std::string::npos) << msg;
  const std::string outside = error_of([&] { opt_b->step(*b.abi, 0.01, 0.1, 4, 1.0, {}, {1, n}); });
  EXPECT_NE(outside.find("outside"), std::string::npos) << outside;
}

TEST(AdamW, StepInRangesEqualsOneStep) { check_step_in_ranges("adamw"); }
TEST(SGD, StepInRangesEqualsOneStep) { check_step_in_ranges("sgd"); }

// ---- Megatron's store_param_remainders (ABI 1.8 param_remainders) ----

// Every finite fp32 value survives split -> compose bit for bit; the bf16 half is the value
// rounded to nearest, ties away from zero (round-to-nearest-even differs on exact ties only).
TEST(ParamRemainders, SplitThenComposeIsExactForEveryFiniteValue) {
  torch::manual_seed(21);
  // Random bit patterns over the whole range, plus the edges.
  at::Tensor bits = torch::randint(std::numeric_limits<int32_t>::min(), std::numeric_limits<int32_t>::max(), {200000},
                                   at::kInt);
  const std::vector<uint32_t> edges = {
      0x00000000u, 0x80000000u,  // +-0
      0x00000001u, 0x80007FFFu, 0x00008000u, 0x0000FFFFu,  // subnormals, one a tie
      0x3F808000u, 0x3F818000u, 0xBF808000u, 0xBF818000u,  // ties below even / odd upper halves
      0x3F807FFFu, 0x3F808001u, 0x3FFFFFFFu, 0xBFFFFFFFu,  // around a tie, carries into the exponent
      0x7F7FFFFFu, 0xFF7FFFFFu, 0x7F7F8000u, 0x7F7F7FFFu,  // the largest finite values
      0x7F800000u, 0xFF800000u};                            // +-inf
  at::Tensor edge = torch::empty({int64_t(edges.size())}, at::kInt);
  for (size_t i = 0; i < edges.size(); ++i) edge[int64_t(i)] = static_cast<int32_t>(edges[i]);
  bits = torch::cat({bits, edge});
  at::Tensor x = bits.view(at::kFloat);
  const at::Tensor finite = x.isnan().logical_not();
  x = x.masked_select(finite).contiguous();
  bits = x.view(at::kInt);

  at::Tensor hi = torch::empty(x.sizes(), at::kBFloat16), rem = torch::empty(x.sizes(), at::kShort);
  megahost::sdk::split_fp32(x, hi, rem);
  EXPECT_TRUE(torch::equal(megahost::sdk::compose_fp32(hi, rem).view(at::kInt), bits));

  // The bf16 half against torch's round-to-nearest-even: equal except on exact ties of an even
  // upper half, where it is one unit further from zero.
  const at::Tensor rne = x.to(at::kBFloat16).view(at::kShort).to(at::kInt);
  const at::Tensor got = hi.view(at::kShort).to(at::kInt);
  const at::Tensor tie = bits.bitwise_and(0xFFFF).eq(0x8000);
  EXPECT_TRUE(torch::equal(got.masked_select(tie.logical_not()), rne.masked_select(tie.logical_not())));
  EXPECT_TRUE(torch::equal(got.masked_select(tie).bitwise_and(0xFFFF),
                           bits.masked_select(tie).div(65536, "floor").add(1).bitwise_and(0xFFFF)));
  EXPECT_GE(tie.sum().item<int64_t>(), 4);

  // NaN keeps being NaN.
  at::Tensor nan = torch::full({3}, std::nanf(""));
  at::Tensor nh = torch::empty({3}, at::kBFloat16), nr = torch::empty({3}, at::kShort);
  megahost::sdk::split_fp32(nan, nh, nr);
  EXPECT_TRUE(megahost::sdk::compose_fp32(nh, nr).isnan().all().item<bool>());
  EXPECT_TRUE(nh.to(at::kFloat).isnan().all().item<bool>());
}

// The optimizer given bf16 parameters with remainders keeps exactly the fp32 masters an fp32
// parameter run computes (CPU: the plugin composes, updates, splits back), and the bf16
// parameters are those masters rounded.
void check_remainders_keep_the_masters(const std::string& id) {
  Params masters = random_params(22);
  auto opt_master = make_optimizer(id);
  opt_master->setup(*masters.abi);

  Params halves;
  halves.names = masters.names;
  halves.flags = masters.flags;
  std::vector<at::Tensor> rem;
  for (const at::Tensor& m : masters.data) {
    halves.data.push_back(torch::empty(m.sizes(), at::kBFloat16));
    halves.grad.push_back(torch::zeros(m.sizes(), at::kFloat));
    rem.push_back(torch::empty(m.sizes(), at::kShort));
    megahost::sdk::split_fp32(m, halves.data.back(), rem.back());
  }
  halves.build();
  for (const at::Tensor& r : rem) halves.abi->remainders.push_back(halves.add_tensor(r));
  auto opt_half = make_optimizer(id);
  opt_half->setup(*halves.abi);
  ASSERT_TRUE(opt_half->takes_param_remainders());

  for (int step = 1; step <= 6; ++step) {
    for (size_t i = 0; i < masters.grad.size(); ++i) {
      masters.grad[i].copy_(torch::randn_like(masters.grad[i]));
      halves.grad[i].copy_(masters.grad[i]);
    }
    opt_master->step(*masters.abi, 0.01, 0.1, step, /*grad_scale=*/0.5);
    opt_half->step(*halves.abi, 0.01, 0.1, step, /*grad_scale=*/0.5);
    for (size_t i = 0; i < masters.data.size(); ++i) {
      SCOPED_TRACE(masters.names[i] + ", step " + std::to_string(step));
      ASSERT_TRUE(torch::equal(megahost::sdk::compose_fp32(halves.data[i], rem[i]), masters.data[i]));
      at::Tensor hi = torch::empty_like(halves.data[i]), lo = torch::empty_like(rem[i]);
      megahost::sdk::split_fp32(masters.data[i], hi, lo);
      ASSERT_TRUE(torch::equal(hi.view(at::kShort), halves.data[i].view(at::kShort)));
    }
  }
  auto state_master = save_state(*opt_master, masters), state_half = save_state(*opt_half, halves);
  for (const auto& [name, t] : state_master) EXPECT_TRUE(torch::equal(t, state_half.at(name))) << name;
}

TEST(AdamW, RemaindersKeepTheFp32MastersExactly) { check_remainders_keep_the_masters("adamw"); }
TEST(SGD, RemaindersKeepTheFp32MastersExactly) { check_remainders_keep_the_masters("sgd"); }

TEST(OptimizerErrors, ARemainderOfTheWrongTypeIsRefused) {
  Params p = random_params(23, at::kBFloat16);
  at::Tensor wrong = torch::zeros(p.data[0].sizes(), at::kInt);  // int32, not int16
  p.abi->remainders.assign(p.names.size(), nullptr);
  p.abi->remainders[0] = p.add_tensor(wrong);
  auto opt = make_optimizer("adamw");
  opt->setup(*p.abi);
  try {
    opt->step(*p.abi, 0.01, 0.0, 1);
    FAIL() << "expected an error";
  } catch (const megahost::core::Error& e) {
    EXPECT_NE(std::string(e.what()).find("param_remainders[0] of 'embedding.weight'"), std::string::npos) << e.what();
  }
}

TEST(AdamW, StateIsFp32WithTheParamShape) {
  Params p = random_params(7);
  auto opt = make_optimizer("adamw");
  opt->setup(*p.abi);
  opt->visit_state(*p.abi, [&](const std::string& name, at::Tensor t) {
    if (name == "step") return;
    const std::string param = name.substr(0, name.rfind('.'));
    const size_t i = std::find(p.names.begin(), p.names.end(), param) - p.names.begin();
    ASSERT_LT(i, p.names.size()) << name;
    EXPECT_EQ(t.sizes(), p.data[i].sizes()) << name;
    EXPECT_EQ(t.dtype(), at::kFloat) << name;
  });
}

// ---- bf16 moments: Megatron's --exp-avg-dtype / --exp-avg-sq-dtype bf16 --------------------------

namespace sr = megahost::sdk::stochastic_round;

const std::string kBf16Moments =
    "use_precision_aware_optimizer = true\nexp_avg_dtype = \"bf16\"\nexp_avg_sq_dtype = \"bf16\"\n";

uint32_t bits_of(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof(u));
  return u;
}

// float32 values over many binades, both signs, a few exact bf16 values and the specials.
at::Tensor rounding_inputs() {
  torch::manual_seed(11);
  at::Tensor x = torch::randn({4096}) * torch::pow(10.0, torch::randint(-20, 20, {4096}).to(at::kFloat));
  const float inf = std::numeric_limits<float>::infinity();
  x.narrow(0, 0, 8).copy_(torch::tensor({0.0f, -0.0f, 1.0f, -2.5f, inf, -inf, 1e-40f, -3e-39f}));
  return x;
}

// The torch ops the CPU takes and the bit rule the CUDA kernel takes give the same bits.
TEST(StochasticRound, TorchOpsGiveTheBitRulesBits) {
  at::Tensor x = rounding_inputs();
  x[9] = std::numeric_limits<float>::quiet_NaN();
  for (int64_t step : {1, 2, 1000})
    for (int half : {0, 1}) {
      const uint32_t salt = sr::salt(step);
      at::Tensor out = at::empty(x.sizes(), at::kBFloat16);
      sr::to_bf16(x, salt, half, out);
      const auto* got = static_cast<const uint16_t*>(out.data_ptr());
      const float* in = x.data_ptr<float>();
      for (int64_t i = 0; i < x.numel(); ++i)
        ASSERT_EQ(got[i], sr::bf16_bits(bits_of(in[i]), sr::element_bits(salt, i) >> (16 * half)))
            << "element " << i << " = " << in[i] << ", half " << half;
    }
}

// Each result is one of the two bf16 neighbours, and over many steps the mean is the value: round
// to nearest would miss by up to half a bf16 spacing on every element.
TEST(StochasticRound, RoundsToANeighbourAndIsUnbiased) {
  const at::Tensor x = rounding_inputs();
  const int64_t n = x.numel();
  const at::Tensor u = x.view(at::kInt).to(at::kLong).bitwise_and(int64_t{0xFFFFFFFF});
  const at::Tensor down = u.div(65536, "floor");  // the bf16 bits toward zero
  // One bf16 spacing at each value (double): the neighbour away from zero minus the one toward it.
  auto as_double = [](const at::Tensor& bf16_bits) {
    return bf16_bits.mul(65536).sub(bf16_bits.ge(int64_t(1) << 15).to(at::kLong).mul(int64_t(1) << 32))
        .to(at::kInt).view(at::kFloat).to(at::kDouble);
  };
  const at::Tensor spacing = (as_double(down + 1) - as_double(down)).abs();
  at::Tensor sum = at::zeros({n}, at::kDouble);
  const int steps = 1000;
  for (int step = 1; step <= steps; ++step) {
    at::Tensor out = at::empty({n}, at::kBFloat16);
    sr::to_bf16(x, sr::salt(step), step % 2, out);
    const at::Tensor got = out.view(at::kShort).to(at::kLong).bitwise_and(0xFFFF);
    const at::Tensor neighbour = got.eq(down).logical_or(got.eq(down + 1).logical_and(u.remainder(65536).ne(0)));
    ASSERT_TRUE(neighbour.narrow(0, 4, n - 4).all().item<bool>()) << "step " << step;  // finite values
    sum += out.to(at::kDouble);
  }
  for (int64_t i : {0, 1, 2, 3}) EXPECT_EQ(sum[i].item<double>(), steps * x[i].item<double>()) << i;  // exact
  EXPECT_EQ(sum[4].item<double>(), std::numeric_limits<double>::infinity());
  EXPECT_EQ(sum[5].item<double>(), -std::numeric_limits<double>::infinity());
  // Bias in spacings: a binomial mean of 1000 draws has sigma <= 0.016; 0.1 is > 6 sigma.
  const at::Tensor bias = ((sum / steps - x.to(at::kDouble)) / spacing).narrow(0, 8, n - 8);
  EXPECT_LE(bias.abs().max().item<double>(), 0.1);
  EXPECT_LE(std::abs(bias.mean().item<double>()), 0.01);
  at::Tensor nan_out = at::empty({1}, at::kBFloat16);
  sr::to_bf16(torch::tensor({std::numeric_limits<float>::quiet_NaN()}), 5, 0, nan_out);
  EXPECT_TRUE(std::isnan(nan_out.to(at::kFloat).item<float>()));
}

// `steps` steps of lr 0.01 and weight decay 0.1 of optimizer a on p and b on q (the same shapes),
// both fed the same fresh gradients.
void step_side_by_side(Optimizer& a, Params& p, Optimizer& b, Params& q, int steps) {
  for (int step = 1; step <= steps; ++step) {
    for (size_t i = 0; i < p.grad.size(); ++i) {
      p.grad[i].copy_(torch::randn_like(p.grad[i]));
      q.grad[i].copy_(p.grad[i]);
    }
    a.step(*p.abi, 0.01, 0.1, step);
    b.step(*q.abi, 0.01, 0.1, step);
  }
}

TEST(AdamW, Bf16MomentsAreBf16AndFollowFp32Moments) {
  Params p = random_params(21), q = random_params(21);
  auto fp32 = make_optimizer("adamw", "adam_beta2 = 0.95\n");
  auto bf16 = make_optimizer("adamw", "adam_beta2 = 0.95\n" + kBf16Moments);
  fp32->setup(*p.abi);
  bf16->setup(*q.abi);
  bf16->visit_state(*q.abi, [](const std::string& name, at::Tensor t) {
    if (name != "step") EXPECT_EQ(t.scalar_type(), at::kBFloat16) << name;
  });
  const std::vector<at::Tensor> start = reference_copies(p);
  step_side_by_side(*fp32, p, *bf16, q, 20);
  // 20 steps of lr 0.01 move each parameter up to 0.2; the moments' rounding (< 0.8% each) may
  // move an update by ~1%: 2e-3 at most, and not zero (the moments are really bf16).
  const double moved = max_abs_diff(p.data, start), apart = max_abs_diff(p.data, q.data);
  EXPECT_GT(moved, 0.05);
  EXPECT_LE(apart, 2e-3);
  EXPECT_GT(apart, 0.0);
}

// With zero gradients v decays by beta2 each step. A bf16 v rounded to nearest would never move
// (0.1% is under half a bf16 spacing); rounded stochastically its mean follows beta2^t.
TEST(AdamW, Bf16SecondMomentDecaysAsBeta2ToTheT) {
  Params p;
  p.names = {"w"};
  p.data = {torch::randn({8192})};
  p.grad = {torch::zeros({8192})};
  p.flags = {0};
  p.build();
  auto opt = make_optimizer("adamw", kBf16Moments);  // beta2 = 0.999
  opt->setup(*p.abi);
  opt->visit_state(*p.abi, [](const std::string& name, at::Tensor t) {
    if (name == "w.exp_avg_sq") t.fill_(1.0);
  });
  const int steps = 500;
  for (int step = 1; step <= steps; ++step) opt->step(*p.abi, 0.0, 0.0, step);
  double mean = 0;
  opt->visit_state(*p.abi, [&](const std::string& name, at::Tensor t) {
    if (name == "w.exp_avg_sq") mean = t.to(at::kDouble).mean().item<double>();
  });
  EXPECT_NEAR(mean, std::pow(0.999, steps), 0.01 * std::pow(0.999, steps));
}

// A parameter split into two shards (as the distributed optimizer splits it), each view stepped
// with its start as param_offsets (ABI 1.10): the shards' bf16 moments and updates equal the whole
// parameter's bit for bit. Without the offsets the second shard would round with other bits.
TEST(AdamW, Bf16MomentsOfShardsEqualTheWholeParameters) {
  torch::manual_seed(23);
  const int64_t n = 1001, cut = 389;
  Params whole, halves;
  whole.names = {"w"};
  whole.data = {torch::randn({n})};
  whole.grad = {torch::zeros({n})};
  whole.flags = {0};
  halves.names = {"w", "w"};
  halves.data = {whole.data[0].narrow(0, 0, cut).clone(), whole.data[0].narrow(0, cut, n - cut).clone()};
  halves.grad = {torch::zeros({cut}), torch::zeros({n - cut})};
  halves.flags = {0, 0};
  whole.build();
  halves.build();
  halves.abi->offsets = {0, cut};
  auto a = make_optimizer("adamw", kBf16Moments), b = make_optimizer("adamw", kBf16Moments);
  a->setup(*whole.abi);
  b->setup(*halves.abi);
  for (int step = 1; step <= 5; ++step) {
    whole.grad[0].copy_(torch::randn({n}));
    halves.grad[0].copy_(whole.grad[0].narrow(0, 0, cut));
    halves.grad[1].copy_(whole.grad[0].narrow(0, cut, n - cut));
    a->step(*whole.abi, 0.01, 0.1, step);
    b->step(*halves.abi, 0.01, 0.1, step);
  }
  EXPECT_TRUE(at::equal(whole.data[0], at::cat({halves.data[0], halves.data[1]})));
  std::map<std::string, std::vector<at::Tensor>> parts;
  b->visit_state(*halves.abi, [&](const std::string& name, at::Tensor t) { parts[name].push_back(t.clone()); });
  a->visit_state(*whole.abi, [&](const std::string& name, at::Tensor t) {
    if (name == "step") return;
    ASSERT_EQ(parts[name].size(), 2u) << name;
    EXPECT_TRUE(at::equal(t, at::cat(parts[name]))) << name;
  });
}

TEST(AdamW, Bf16MomentsOnCudaFollowTheCpuReference) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const auto cuda = at::TensorOptions().dtype(at::kFloat).device(at::kCUDA, 0);
  // Sizes past one 16384-element chunk, and with tails the kernel takes one element at a time.
  auto odd_params = [](at::TensorOptions opts) {
    torch::manual_seed(22);
    Params p;
    p.names = {"big", "odd", "small"};
    for (int64_t n : {40003, 4099, 7}) {
      p.data.push_back(torch::randn({n}).to(opts));
      p.grad.push_back(torch::zeros({n}, opts));
      p.flags.push_back(0);
    }
    p.build();
    return p;
  };
  Params p = odd_params(at::kFloat), q = odd_params(cuda);
  auto cpu_opt = make_optimizer("adamw", kBf16Moments);
  auto gpu_opt = make_optimizer("adamw", kBf16Moments, {kDLCUDA, 0});
  cpu_opt->setup(*p.abi);
  gpu_opt->setup(*q.abi);
  step_side_by_side(*cpu_opt, p, *gpu_opt, q, 10);
  // The same update and the same random bits: a moment rounds to the other neighbour only where
  // the float32 values differ in the last bit right at a threshold (1 in 65536 of those), and a
  // parameter then moves by under 1% of an update (lr 0.01): 5e-4 bounds a few such steps.
  EXPECT_LE(max_abs_diff(p.data, q.data), 5e-4);
  std::map<std::string, at::Tensor> cpu_state = save_state(*cpu_opt, p), gpu_state = save_state(*gpu_opt, q);
  for (const auto& [name, t] : cpu_state) {
    if (name == "step") continue;
    EXPECT_EQ(gpu_state.at(name).scalar_type(), at::kBFloat16) << name;
    const at::Tensor a = t.to(at::kDouble), b = gpu_state.at(name).cpu().to(at::kDouble);
    EXPECT_GE(a.eq(b).to(at::kDouble).mean().item<double>(), 0.99) << name;
  }
}

// ---- fp16 / fp8 moments: Megatron's --exp-avg-dtype fp16 | fp8, scaled per tensor ----------------

namespace compat = megahost::compat;

// The E4M3 codec against the format: exact codes, ties to even, the subnormals, overflow to NaN.
TEST(Float8E4M3, CodecFollowsTheFormat) {
  const std::pair<float, uint8_t> cases[] = {
      {0.0f, 0x00},       {-0.0f, 0x80},     {1.0f, 0x38},         {-1.0f, 0xB8},       {0.5f, 0x30},
      {448.0f, 0x7E},     {-448.0f, 0xFE},   {0.015625f, 0x08},    {0.001953125f, 0x01}, {1.0625f, 0x38},
      {1.1875f, 0x3A},    {464.0f, 0x7E},    {465.0f, 0x7F},       {-1e9f, 0xFF},       {0.0009765625f, 0x00},
      {0.0029296875f, 0x02}, {0.0146484375f, 0x08}, {3.0f, 0x44},  {240.0f, 0x77},      {0.1f, 0x1D}};
  for (auto [x, code] : cases) EXPECT_EQ(megahost::sdk::float_to_e4m3(x), code) << x;
  EXPECT_EQ(megahost::sdk::float_to_e4m3(std::numeric_limits<float>::quiet_NaN()) & 0x7F, 0x7F);
  for (int c = 0; c < 256; ++c) {  // every finite code decodes to a value that encodes back to it
    const float v = megahost::sdk::e4m3_to_float(static_cast<uint8_t>(c));
    if ((c & 0x7F) == 0x7F) {
      EXPECT_TRUE(std::isnan(v)) << c;
      continue;
    }
    EXPECT_EQ(megahost::sdk::float_to_e4m3(v), c) << c << " = " << v;
  }
  EXPECT_EQ(megahost::sdk::e4m3_to_float(0x7E), 448.0f);
  EXPECT_EQ(megahost::sdk::e4m3_to_float(0x01), 0.001953125f);
}

// The tensor conversion this libtorch takes (its own float8 dtype on 2.x) gives the codec's bits.
TEST(Float8E4M3, TensorConversionMatchesTheCodec) {
  torch::manual_seed(31);
  at::Tensor x = torch::randn({20000}) * torch::pow(2.0, torch::randint(-14, 9, {20000}).to(at::kFloat));
  x = x.clamp(-464.0, 464.0);
  const at::Tensor bits = compat::to_e4m3_bits(x);
  ASSERT_EQ(bits.scalar_type(), at::kByte);
  const float* in = x.data_ptr<float>();
  const uint8_t* got = bits.data_ptr<uint8_t>();
  for (int64_t i = 0; i < x.numel(); ++i) ASSERT_EQ(got[i], megahost::sdk::float_to_e4m3(in[i])) << in[i];
  const at::Tensor back = compat::from_e4m3_bits(bits);
  const float* out = back.data_ptr<float>();
  for (int64_t i = 0; i < x.numel(); ++i) ASSERT_EQ(out[i], megahost::sdk::e4m3_to_float(got[i])) << i;
}

std::string scaled_moments(const std::string& dtype) {
  return "use_precision_aware_optimizer = true\nexp_avg_dtype = \"" + dtype + "\"\nexp_avg_sq_dtype = \"" + dtype +
         "\"\n";
}

// After one step m = 0.1 g and v = 0.001 g^2 exactly in float32. The scaled state puts its largest
// magnitude on the format's range, so that one comes back to float32 rounding, and every other
// value to the format's rounding: half a unit in the last place (fp16 2^-11, E4M3 2^-4 relative),
// or half the smallest subnormal step in absolute terms.
TEST(AdamW, ScaledMomentsRoundEachValueToTheFormat) {
  for (const auto& [dtype, relative, range, subnormal] :
       {std::tuple<std::string, double, double, double>{"fp16", 0x1p-11, 32752.0, 0x1p-24},
        std::tuple<std::string, double, double, double>{"fp8", 0x1p-4, 448.0, 0x1p-9}}) {
    SCOPED_TRACE(dtype);
    Params p = random_params(41), q = random_params(41);
    auto fp32 = make_optimizer("adamw");
    auto scaled = make_optimizer("adamw", scaled_moments(dtype));
    fp32->setup(*p.abi);
    scaled->setup(*q.abi);
    step_side_by_side(*fp32, p, *scaled, q, 1);
    std::map<std::string, at::Tensor> exact = save_state(*fp32, p), got = save_state(*scaled, q);
    for (const auto& [name, t] : exact) {
      if (name == "step") continue;
      ASSERT_EQ(got.at(name).scalar_type(), at::kFloat) << name;  // handed out as float32 values
      const at::Tensor a = t.to(at::kDouble), b = got.at(name).to(at::kDouble);
      const double absmax = a.abs().max().item<double>();
      EXPECT_NEAR(b.abs().max().item<double>(), absmax, 1e-6 * absmax) << name;
      const at::Tensor bound = a.abs() * relative + absmax / range * subnormal / 2 * 1.0001;
      EXPECT_TRUE((a - b).abs().le(bound).all().item<bool>()) << name;
      EXPECT_GT((a - b).abs().max().item<double>(), 0.0) << name;  // really stored narrower
    }
  }
}

// Twenty steps beside fp32 moments: the parameters follow within the moments' rounding. An update
// (at most lr = 0.01 here) moves by the relative rounding of m plus half that of v: 2^-11 + 2^-12
// for fp16, 2^-4 + 2^-5 for fp8; twenty steps bound the distance by 20x that (measured: 4.5e-5
// and 5.6e-3). A v flushed to zero would blow an update up to m / eps and fail it.
TEST(AdamW, ScaledMomentsFollowFp32Moments) {
  for (const auto& [dtype, bound] : {std::pair<std::string, double>{"fp16", 1.5e-4}, {"fp8", 1.9e-2}}) {
    SCOPED_TRACE(dtype);
    Params p = random_params(42), q = random_params(42);
    auto fp32 = make_optimizer("adamw", "adam_beta2 = 0.95\n");
    auto scaled = make_optimizer("adamw", "adam_beta2 = 0.95\n" + scaled_moments(dtype));
    fp32->setup(*p.abi);
    scaled->setup(*q.abi);
    const std::vector<at::Tensor> start = reference_copies(p);
    step_side_by_side(*fp32, p, *scaled, q, 20);
    const double moved = max_abs_diff(p.data, start), apart = max_abs_diff(p.data, q.data);
    EXPECT_GT(moved, 0.05);
    EXPECT_LE(apart, bound) << "moved " << moved;
    EXPECT_GT(apart, 0.0);
  }
}

// A checkpoint holds the float32 values; loading them into a fresh optimizer restores the stored
// states, and the two continue together (the scale is recomputed from the values, as Transformer
// Engine's load does: it may differ in its last bit, hence near, not equal). Visiting to save
// leaves the stored state untouched: a run that saved steps exactly as one that did not.
TEST(AdamW, ScaledMomentsSurviveACheckpoint) {
  for (const std::string dtype : {"fp16", "fp8"}) {
    SCOPED_TRACE(dtype);
    Params a = random_params(43), b = random_params(43), c = random_params(43);
    auto opt_a = make_optimizer("adamw", scaled_moments(dtype));
    auto opt_b = make_optimizer("adamw", scaled_moments(dtype));
    auto opt_c = make_optimizer("adamw", scaled_moments(dtype));
    opt_a->setup(*a.abi);
    opt_b->setup(*b.abi);
    step_side_by_side(*opt_a, a, *opt_b, b, 3);
    const std::map<std::string, at::Tensor> saved = save_state(*opt_a, a);
    EXPECT_TRUE(at::equal(save_state(*opt_a, a).at("layers.0.linear.weight.exp_avg"),
                          saved.at("layers.0.linear.weight.exp_avg")));
    for (size_t i = 0; i < a.data.size(); ++i) c.data[i].copy_(a.data[i]);
    opt_c->setup(*c.abi);
    opt_c->visit_state(*c.abi, [&](const std::string& name, at::Tensor t) { t.copy_(saved.at(name)); });
    const std::map<std::string, at::Tensor> loaded = save_state(*opt_c, c);
    for (const auto& [name, t] : saved) EXPECT_TRUE(at::allclose(loaded.at(name), t, 1e-6, 0)) << name;
    for (int step = 4; step <= 6; ++step) {  // a saved, b did not, c resumed from a's state
      for (size_t i = 0; i < a.grad.size(); ++i) {
        a.grad[i].copy_(torch::randn_like(a.grad[i]));
        b.grad[i].copy_(a.grad[i]);
        c.grad[i].copy_(a.grad[i]);
      }
      opt_a->step(*a.abi, 0.01, 0.1, step);
      opt_b->step(*b.abi, 0.01, 0.1, step);
      opt_c->step(*c.abi, 0.01, 0.1, step);
    }
    for (size_t i = 0; i < a.data.size(); ++i) EXPECT_TRUE(at::equal(a.data[i], b.data[i])) << i;
    EXPECT_LE(max_abs_diff(c.data, a.data), 1e-6);
  }
}

// The state's size as stored (extension "mh.optimizer.state_bytes/1"): one byte per element and
// moment for fp8, two for fp16, plus a float32 scale per tensor and moment and the step counter.
TEST(AdamW, StateBytesCountTheStoredMoments) {
  Params p = random_params(44);
  int64_t elements = 0;
  for (const at::Tensor& t : p.data) elements += t.numel();
  const int64_t tensors = static_cast<int64_t>(p.data.size());
  for (const auto& [dtype, width] : {std::pair<std::string, int64_t>{"fp32", 4}, {"bf16", 2}, {"fp16", 2}, {"fp8", 1}}) {
    auto opt = make_optimizer("adamw", dtype == "fp32" ? "" : scaled_moments(dtype));
    opt->setup(*p.abi);
    const int64_t scales = dtype == "fp16" || dtype == "fp8" ? 2 * 4 * tensors : 0;
    EXPECT_EQ(opt->state_bytes().value_or(-1), 2 * width * elements + scales + 8) << dtype;
  }
}

TEST(AdamW, ScaledMomentsOnCudaFollowTheCpu) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const auto cuda = at::TensorOptions().dtype(at::kFloat).device(at::kCUDA, 0);
  // fp32 parameters take the fused kernel; bf16 ones without remainders are updated through fp32
  // working copies written back after the step (the fused kernel's fp32-parameter form on CUDA).
  for (const at::ScalarType param_type : {at::kFloat, at::kBFloat16})
  for (const std::string dtype : {"fp16", "fp8"}) {
    SCOPED_TRACE(dtype + (param_type == at::kFloat ? " moments, fp32 params" : " moments, bf16 params"));
    Params p = random_params(45), q = random_params(45);
    for (size_t i = 0; i < q.data.size(); ++i) {
      p.data[i] = p.data[i].to(param_type), p.grad[i] = p.grad[i].to(param_type);
      q.data[i] = p.data[i].to(cuda.dtype(param_type)), q.grad[i] = p.grad[i].to(cuda.dtype(param_type));
    }
    p.build();
    q.build();
    auto cpu_opt = make_optimizer("adamw", scaled_moments(dtype));
    auto gpu_opt = make_optimizer("adamw", scaled_moments(dtype), {kDLCUDA, 0});
    cpu_opt->setup(*p.abi);
    gpu_opt->setup(*q.abi);
    step_side_by_side(*cpu_opt, p, *gpu_opt, q, 10);
    // The CUDA kernel (two passes over the stored moments) and the CPU's torch ops compute the
    // same update, but not to the bit: the kernel takes 1 - beta in float32 from float32 betas
    // (1 - 0.999f is 4.7e-5 away from 0.001), the torch ops from doubles. So the moments agree to
    // ~1e-4 relative, and where that moves a value across a rounding threshold it lands one
    // format step away, which moves that element's update by the format's relative rounding.
    // bf16 parameters: the two sides' fp32 results may round to neighbouring bf16 values (2^-8
    // relative of |p| <= ~5).
    const double param_rounding = param_type == at::kFloat ? 0.0 : 5 * 0x1p-8;
    EXPECT_LE(max_abs_diff(p.data, q.data), (dtype == "fp8" ? 1e-3 : 1e-5) + param_rounding);
    for (const at::Tensor& t : q.data) EXPECT_EQ(t.scalar_type(), param_type);
    const std::map<std::string, at::Tensor> cpu_state = save_state(*cpu_opt, p), gpu_state = save_state(*gpu_opt, q);
    for (const auto& [name, t] : cpu_state) {
      if (name == "step") continue;
      const at::Tensor a = t.to(at::kDouble), b = gpu_state.at(name).cpu().to(at::kDouble);
      const double absmax = a.abs().max().item<double>();
      EXPECT_NEAR(b.abs().max().item<double>(), absmax, 2e-4 * absmax) << name;  // the same scale, to that
      // Within one step of the format (fp16: 2^-10 relative, fp8: 2^-3; the subnormals' step below).
      const double step = dtype == "fp8" ? 0x1p-3 : 0x1p-10, tiny = dtype == "fp8" ? 0x1p-9 / 448 : 0x1p-24 / 32752;
      const at::Tensor close = (a - b).abs().le((step + 2e-4) * a.abs() + tiny * absmax);
      EXPECT_GE(close.to(at::kDouble).mean().item<double>(), 0.999) << name;
    }
  }
}

// ---- errors name the problem ------------------------------------------------------------------

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

TEST(OptimizerErrors, BadBetaNamesTheKey) {
  const std::string msg = error_of([] { make_optimizer("adamw", "adam_beta1 = 1.5\n"); });
  EXPECT_NE(msg.find("adam_beta1"), std::string::npos) << msg;
  EXPECT_NE(msg.find("HINT"), std::string::npos) << msg;
}

TEST(OptimizerErrors, StepBeforeSetupIsRefused) {
  Params p = random_params(8);
  auto opt = make_optimizer("adamw");
  const std::string msg = error_of([&] { opt->step(*p.abi, 0.01, 0.0, 1); });
  EXPECT_NE(msg.find("before setup"), std::string::npos) << msg;
}

TEST(OptimizerErrors, ADifferentParameterListIsRefused) {
  Params p = random_params(9);
  auto opt = make_optimizer("sgd");
  opt->setup(*p.abi);
  Params q = random_params(9);
  std::swap(q.names[0], q.names[1]);
  q.build();
  const std::string msg = error_of([&] { opt->step(*q.abi, 0.01, 0.0, 1); });
  EXPECT_NE(msg.find("layers.0.linear.weight"), std::string::npos) << msg;
  EXPECT_NE(msg.find("HINT"), std::string::npos) << msg;
}

TEST(OptimizerErrors, Bf16MomentsNeedThePrecisionAwareOptimizer) {
  const std::string msg = error_of([] { make_optimizer("adamw", "exp_avg_sq_dtype = \"bf16\"\n"); });
  EXPECT_NE(msg.find("exp_avg_sq_dtype = 'bf16' needs use_precision_aware_optimizer = true"), std::string::npos)
      << msg;
  EXPECT_NE(msg.find("HINT"), std::string::npos) << msg;
}

TEST(OptimizerErrors, AnUnknownMomentDtypeNamesTheKey) {
  const std::string msg =
      error_of([] { make_optimizer("adamw", "use_precision_aware_optimizer = true\nexp_avg_dtype = \"fp4\"\n"); });
  EXPECT_NE(msg.find("exp_avg_dtype = 'fp4' is not one of fp32, bf16, fp16, fp8"), std::string::npos) << msg;
  EXPECT_NE(msg.find("HINT"), std::string::npos) << msg;
}

TEST(OptimizerErrors, Fp8MomentsNeedThePrecisionAwareOptimizer) {
  const std::string msg = error_of([] { make_optimizer("adamw", "exp_avg_dtype = \"fp8\"\n"); });
  EXPECT_NE(msg.find("exp_avg_dtype = 'fp8' needs use_precision_aware_optimizer = true"), std::string::npos) << msg;
}

TEST(OptimizerErrors, UnknownIdListsWhatExists) {
  const std::string msg = error_of([] { make_optimizer("lion"); });
  EXPECT_NE(msg.find("adamw"), std::string::npos) << msg;
}

}  // namespace
