// safetensors folders as at::Tensors (see megahost/core/convert/safetensors.h): the SDK's reader
// and writer, DLPack views in between.
#include "megahost/core/convert/safetensors.h"

#include <ATen/ops/empty.h>

#include "megahost/core/error.h"
#include "megahost/sdk/safetensors.h"
#include "megahost/sdk/torch_interop.h"

namespace megahost::core {

namespace {
// The SDK reports errors as sdk::Error; the core's callers expect core::Error.
template <class F>
auto core_errors(F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const sdk::Error& e) {
    throw Error(e.what());
  }
}
}  // namespace

SafetensorsFolder::SafetensorsFolder(const std::string& dir) : dir_(dir) {
  st_ = core_errors([&] { return std::make_unique<sdk::StFolder>(dir); });
  for (const auto& [name, e] : st_->entries())
    entries_[name] = {e.name, e.file, sdk::to_scalar_type(e.dtype), e.dtype_name, e.shape, e.offset, e.nbytes};
}

SafetensorsFolder::~SafetensorsFolder() = default;

const SafetensorsEntry& SafetensorsFolder::entry(const std::string& name) const {
  core_errors([&] { return &st_->entry(name); });  // throws naming the folder and tensor
  return entries_.at(name);
}

at::Tensor SafetensorsFolder::read(const std::string& name) const {
  const SafetensorsEntry& e = entry(name);
  at::Tensor t = at::empty(e.shape, at::TensorOptions().dtype(e.dtype));
  sdk::DLView view(t);
  core_errors([&] {
    st_->read(name, view.get());
    return 0;
  });
  return t;
}

SafetensorsWriter::SafetensorsWriter(const std::string& file, const std::vector<Spec>& specs,
                                     const std::map<std::string, std::string>& metadata) {
  std::vector<sdk::StWriter::Spec> st_specs;
  for (const Spec& s : specs) st_specs.push_back({s.name, sdk::to_dl_dtype(s.dtype), s.shape});
  st_ = core_errors([&] { return std::make_unique<sdk::StWriter>(file, std::move(st_specs), metadata); });
}

SafetensorsWriter::~SafetensorsWriter() = default;

void SafetensorsWriter::write(const std::string& name, const at::Tensor& t) {
  const at::Tensor c = t.contiguous();
  sdk::DLView view(c);
  core_errors([&] {
    st_->write(name, view.get());
    return 0;
  });
}

void SafetensorsWriter::close() {
  core_errors([&] {
    st_->close();
    return 0;
  });
}

}  // namespace megahost::core
