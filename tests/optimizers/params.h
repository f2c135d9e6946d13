// Test helper: parameters and gradients as the host hands them to an optimizer plugin.
#pragma once

#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "megahost/core/instances.h"
#include "megahost/sdk/torch_interop.h"

namespace megahost::test {

using core::Model;

// Parameters and gradients as the host hands them to an optimizer.
struct Params {
  std::vector<std::string> names;
  std::vector<at::Tensor> data, grad;
  std::vector<uint32_t> flags;
  std::unique_ptr<Model::AbiParams> abi;

  // A DLTensor over t (contiguous), owned by abi.
  DLTensor* add_tensor(const at::Tensor& t) {
    auto dl = std::make_unique<DLTensor>();
    abi->shapes.push_back(t.sizes().vec());
    dl->data = t.data_ptr();
    dl->device = megahost::sdk::to_dl_device(t.device());
    dl->ndim = int32_t(t.dim());
    dl->dtype = megahost::sdk::to_dl_dtype(t.scalar_type());
    dl->shape = abi->shapes.back().data();
    dl->strides = nullptr;
    dl->byte_offset = 0;
    abi->tensors.push_back(std::move(dl));
    return abi->tensors.back().get();
  }

  void build() {
    abi = std::make_unique<Model::AbiParams>();
    abi->names = names;
    for (size_t i = 0; i < names.size(); ++i)
      for (const at::Tensor* t : {&data[i], &grad[i]}) add_tensor(*t);
    for (size_t i = 0; i < names.size(); ++i) {
      mh_param_view v{};
      v.struct_size = sizeof(v);
      v.name = abi->names[i].c_str();
      v.data = abi->tensors[2 * i].get();
      v.grad = abi->tensors[2 * i + 1].get();
      v.tensor_parallel_dim = -1;
      v.flags = flags[i];
      abi->views.push_back(v);
    }
  }
};

// A few shapes; the bias and the norm weight are flagged no-weight-decay, as Megatron groups them.
inline Params random_params(uint64_t seed, at::TensorOptions opts = at::kFloat) {
  torch::manual_seed(seed);
  Params p;
  const std::vector<std::pair<std::string, std::vector<int64_t>>> spec = {
      {"embedding.weight", {11, 8}}, {"layers.0.linear.weight", {8, 8}}, {"layers.0.linear.bias", {8}},
      {"layers.0.norm.weight", {2, 3, 4}}};
  for (const auto& [name, shape] : spec) {
    p.names.push_back(name);
    p.data.push_back(torch::randn(shape, opts));
    p.grad.push_back(torch::zeros(shape, opts));
    p.flags.push_back(name.find("bias") != std::string::npos || name.find("norm") != std::string::npos
                          ? MH_PARAM_NO_WEIGHT_DECAY
                          : 0u);
  }
  p.build();
  return p;
}

}  // namespace megahost::test
