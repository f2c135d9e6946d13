// megahost SDK — DLPack <-> torch::Tensor without copies, for plugins that link libtorch.
//
// We fill DLTensor structs by hand instead of at::toDLPack/fromDLPack: the borrowed-view rules
// of the ABI need no managed tensor, and this works the same on libtorch 1.13 and 2.x.
#pragma once

#include <ATen/ATen.h>

#include <vector>

#include "megahost/megahost.h"
#include "megahost/sdk/error.h"

namespace megahost::sdk {

inline at::ScalarType to_scalar_type(DLDataType t) {
  MH_CHECK(t.lanes == 1, MH_ERR_UNSUPPORTED, "vector dtypes (lanes=", int(t.lanes), ") are not supported");
  switch (t.code) {
    case kDLFloat:
      if (t.bits == 32) return at::kFloat;
      if (t.bits == 64) return at::kDouble;
      if (t.bits == 16) return at::kHalf;
      break;
    case kDLBfloat:
      if (t.bits == 16) return at::kBFloat16;
      break;
    case kDLInt:
      if (t.bits == 64) return at::kLong;
      if (t.bits == 32) return at::kInt;
      if (t.bits == 16) return at::kShort;
      if (t.bits == 8) return at::kChar;
      break;
    case kDLUInt:
      if (t.bits == 8) return at::kByte;
      if (t.bits == 1) return at::kBool;
      break;
    default:
      break;
  }
  throw Error(MH_ERR_UNSUPPORTED, str_cat("unsupported DLPack dtype code=", int(t.code), " bits=", int(t.bits)));
}

inline DLDataType to_dl_dtype(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return {kDLFloat, 32, 1};
    case at::kDouble: return {kDLFloat, 64, 1};
    case at::kHalf: return {kDLFloat, 16, 1};
    case at::kBFloat16: return {kDLBfloat, 16, 1};
    case at::kLong: return {kDLInt, 64, 1};
    case at::kInt: return {kDLInt, 32, 1};
    case at::kShort: return {kDLInt, 16, 1};
    case at::kChar: return {kDLInt, 8, 1};
    case at::kByte: return {kDLUInt, 8, 1};
    case at::kBool: return {kDLUInt, 1, 1};  // DLPack 0.6 has no kDLBool
    default: break;
  }
  throw Error(MH_ERR_UNSUPPORTED, str_cat("no DLPack dtype for ", c10::toString(t)));
}

inline at::Device to_torch_device(DLDevice d) {
  if (d.device_type == kDLCPU) return at::Device(at::kCPU);
  if (d.device_type == kDLCUDA) return at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(d.device_id));
  throw Error(MH_ERR_UNSUPPORTED, str_cat("unsupported DLPack device type ", int(d.device_type)));
}

inline DLDevice to_dl_device(const at::Device& d) {
  if (d.is_cpu()) return {kDLCPU, 0};
  if (d.is_cuda()) return {kDLCUDA, d.index() < 0 ? 0 : d.index()};
  throw Error(MH_ERR_UNSUPPORTED, str_cat("unsupported torch device ", d.str()));
}

// A borrowed torch view of a DLTensor: shares storage, never frees it.
inline at::Tensor to_torch(const DLTensor* t) {
  MH_CHECK(t != nullptr, MH_ERR_INVALID_ARG, "null tensor");
  std::vector<int64_t> shape(t->shape, t->shape + t->ndim);
  auto opts = at::TensorOptions().dtype(to_scalar_type(t->dtype)).device(to_torch_device(t->device));
  char* data = static_cast<char*>(t->data) + t->byte_offset;
  if (t->strides == nullptr) return at::from_blob(data, shape, [](void*) {}, opts);
  std::vector<int64_t> strides(t->strides, t->strides + t->ndim);
  return at::from_blob(data, shape, strides, [](void*) {}, opts);
}

// A DLTensor describing a torch tensor (borrowed: the tensor must outlive the view).
// Owns its shape/strides arrays, so keep the DLView alive while the DLTensor is in use.
struct DLView {
  DLTensor dl{};
  std::vector<int64_t> shape, strides;

  DLView() = default;
  explicit DLView(const at::Tensor& t) { reset(t); }
  DLView(const DLView&) = delete;
  DLView& operator=(const DLView&) = delete;

  void reset(const at::Tensor& t) {
    shape.assign(t.sizes().begin(), t.sizes().end());
    strides.assign(t.strides().begin(), t.strides().end());
    dl.data = t.data_ptr();
    dl.device = to_dl_device(t.device());
    dl.ndim = static_cast<int32_t>(t.dim());
    dl.dtype = to_dl_dtype(t.scalar_type());
    dl.shape = shape.data();
    dl.strides = strides.data();
    dl.byte_offset = 0;
  }
  DLTensor* get() { return &dl; }
};

}  // namespace megahost::sdk
