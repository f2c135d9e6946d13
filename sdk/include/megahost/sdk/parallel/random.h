// megahost SDK — Megatron's model-parallel RNG for dropout, without a tracker and without new state.
//
// Megatron forks a per-TP-rank generator (seed + 2718 + tp_rank) for dropout on activations that
// differ across TP ranks: attention probabilities (each rank holds its own heads) and, under
// sequence parallelism, the hidden states of the sequence-parallel regions (each rank holds its
// own slice of the sequence). Dropout on activations replicated across TP keeps the default
// generator, so every TP rank draws the same mask.
//
// Here the per-rank generator is rebuilt before each use: its seed is ONE 64-bit draw from the
// default generator of the tensor's device (the same on every TP rank, which consume it alike)
// plus 2718 + tp_rank. Masks therefore differ across TP ranks, repeat with the seed, and resume
// exactly from the default generators the host already checkpoints. With tp = 1 nothing changes:
// every dropout is at::dropout on the default generator, as before.
#pragma once

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <cstdint>

#include "megahost/sdk/parallel/dist.h"

namespace megahost::sdk::parallel {

struct ParallelContext;

constexpr uint64_t kTensorParallelSeedOffset = 2718;  // Megatron's model_parallel_cuda_manual_seed

// The generator SDK dropouts treat as the default on this thread for `device`: the process's
// default generator, or the one a ScopedDefaultGenerator installed.
at::Generator default_generator(const at::Device& device);

// One 64-bit draw from gen (host side: no device synchronisation on CUDA).
uint64_t draw_seed(at::Generator& gen);

// A fresh generator on `device` seeded draw_seed(default) + 2718 + tp.rank(). Consumes one draw
// of the default generator on every call, so call it once per dropout, on every TP rank alike.
at::Generator tensor_parallel_generator(const at::Device& device, const DistGroup& tp);

// Inverted dropout with an explicit generator: x * bernoulli(1 - p) / (1 - p). Identity when
// !training or p == 0.
at::Tensor dropout_with(const at::Tensor& x, double p, bool training, at::Generator gen);

// Dropout of activations replicated across TP: at::dropout on the default generator (or on the
// installed ScopedDefaultGenerator).
at::Tensor replicated_dropout(const at::Tensor& x, double p, bool training);

// Dropout of activations that differ across TP ranks: tensor_parallel_generator when
// tp.size() > 1, else replicated_dropout.
at::Tensor tensor_parallel_dropout(const at::Tensor& x, double p, bool training, const DistGroup& tp);

// Megatron's hidden dropout (embeddings, after attention, after the MLP): per TP rank under
// sequence parallelism (the hidden states are this rank's slice of the sequence), replicated
// otherwise. parallel may be null (one device).
at::Tensor hidden_dropout(const at::Tensor& x, double p, bool training, const ParallelContext* parallel);

// Ranks as threads of one process (tests) share the process's default generators; this installs
// `gen` as this thread's default for the SDK's dropouts (not for fused attention kernels at
// tp = 1, which draw from the process default themselves). Restores the previous one on exit.
class ScopedDefaultGenerator {
 public:
  explicit ScopedDefaultGenerator(at::Generator gen);
  ~ScopedDefaultGenerator();
  ScopedDefaultGenerator(const ScopedDefaultGenerator&) = delete;
  ScopedDefaultGenerator& operator=(const ScopedDefaultGenerator&) = delete;

 private:
  at::Generator previous_;
};

}  // namespace megahost::sdk::parallel
