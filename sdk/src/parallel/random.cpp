// megahost SDK — Megatron's model-parallel RNG for dropout (see megahost/sdk/parallel/random.h).
#include "megahost/sdk/parallel/random.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <cstring>
#include <mutex>

#include "megahost/sdk/parallel/mappings.h"

namespace megahost::sdk::parallel {
namespace {

thread_local at::Generator thread_default;  // undefined: the process's default

// SplitMix64's finaliser: spreads a (seed, offset) pair over 64 bits.
uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

}  // namespace

at::Generator default_generator(const at::Device& device) {
  if (thread_default.defined() && thread_default.device().type() == device.type()) return thread_default;
  return at::globalContext().defaultGenerator(device);
}

uint64_t draw_seed(at::Generator& gen) {
  {
    std::lock_guard<std::mutex> lock(gen.mutex());
    if (gen.device().is_cpu()) return at::check_generator<at::CPUGeneratorImpl>(gen)->random64();
    // Philox generators (CUDA) keep [seed u64, offset i64] on the host in both libtorch 1.13 and
    // 2.x: derive the draw from them and advance the offset by one step (a multiple of 4), as a
    // kernel drawing from the generator would, without a device synchronisation.
    at::Tensor state = gen.get_state();  // uint8 [16]
    if (state.numel() == 16) {
      uint64_t seed = 0;
      int64_t offset = 0;
      std::memcpy(&seed, state.data_ptr<uint8_t>(), 8);
      std::memcpy(&offset, state.data_ptr<uint8_t>() + 8, 8);
      const uint64_t drawn = mix64(seed ^ mix64(static_cast<uint64_t>(offset) + 0x9e3779b97f4a7c15ULL));
      offset += 4;
      std::memcpy(state.data_ptr<uint8_t>() + 8, &offset, 8);
      gen.set_state(state);
      return drawn;
    }
  }
  // Any other layout: one draw through a kernel (synchronises to read it back).
  const at::Tensor one = at::empty({1}, at::TensorOptions().dtype(at::kLong).device(gen.device()));
  return static_cast<uint64_t>(one.random_(gen).item<int64_t>());
}

at::Generator tensor_parallel_generator(const at::Device& device, const DistGroup& tp) {
  at::Generator base = default_generator(device);
  const uint64_t seed = draw_seed(base) + kTensorParallelSeedOffset + static_cast<uint64_t>(tp.rank());
  at::Generator gen;
  {
    std::lock_guard<std::mutex> lock(base.mutex());
    gen = base.clone();  // same device and kind as the default, own state
  }
  gen.set_current_seed(seed);
  return gen;
}

at::Tensor dropout_with(const at::Tensor& x, double p, bool training, at::Generator gen) {
  if (!training || p == 0.0 || x.numel() == 0) return x;
  if (p >= 1.0) return x * at::zeros_like(x);
  at::Tensor keep = at::empty_like(x).bernoulli_(1.0 - p, gen);  // 1 kept, 0 dropped
  keep.div_(1.0 - p);
  return x * keep;
}

at::Tensor replicated_dropout(const at::Tensor& x, double p, bool training) {
  if (thread_default.defined() && thread_default.device().type() == x.device().type())
    return dropout_with(x, p, training, thread_default);
  return at::dropout(x, p, training);
}

at::Tensor tensor_parallel_dropout(const at::Tensor& x, double p, bool training, const DistGroup& tp) {
  if (tp.size() == 1 || !training || p == 0.0) return replicated_dropout(x, p, training);
  return dropout_with(x, p, training, tensor_parallel_generator(x.device(), tp));
}

at::Tensor hidden_dropout(const at::Tensor& x, double p, bool training, const ParallelContext* parallel) {
  if (parallel && parallel->sequence_parallel) return tensor_parallel_dropout(x, p, training, parallel->tp);
  return replicated_dropout(x, p, training);
}

ScopedDefaultGenerator::ScopedDefaultGenerator(at::Generator gen) : previous_(thread_default) {
  thread_default = std::move(gen);
}

ScopedDefaultGenerator::~ScopedDefaultGenerator() { thread_default = previous_; }

}  // namespace megahost::sdk::parallel
