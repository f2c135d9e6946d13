// The schedules' p2p over the "pp" group of core::ParallelRuntime.
#include "megahost/core/engine/schedules.h"
#include "megahost/core/parallel/world.h"

namespace megahost::core {

namespace {

class GroupComm : public PipelineComm {
 public:
  explicit GroupComm(Group& g) : g_(g) {}
  int64_t rank() const override { return g_.rank(); }
  int64_t size() const override { return g_.size(); }

  void exchange(P2PStep& s, const std::vector<int64_t>& shape, at::ScalarType dtype) override {
    auto& rt = ParallelRuntime::get();
    const at::Device dev = rt.use_cuda() ? at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(rt.local_rank()))
                                         : at::Device(at::kCPU);
    const auto opts = at::TensorOptions().dtype(dtype).device(dev);
    const int n = g_.size(), next = (g_.rank() + 1) % n, prev = (g_.rank() + n - 1) % n;
    std::vector<std::unique_ptr<Work>> work;  // the forward direction first (schedules.h)
    if (s.send_next.defined()) work.push_back(g_.send(s.send_next, next, true));
    if (s.recv_prev) {
      s.from_prev = at::empty(shape, opts);
      work.push_back(g_.recv(s.from_prev, prev, true));
    }
    if (s.send_prev.defined()) work.push_back(g_.send(s.send_prev, prev, true));
    if (s.recv_next) {
      s.from_next = at::empty(shape, opts);
      work.push_back(g_.recv(s.from_next, next, true));
    }
    for (auto& w : work) w->wait();
  }

 private:
  Group& g_;
};

}  // namespace

std::unique_ptr<PipelineComm> pipeline_comm_from_runtime() {
  auto& rt = ParallelRuntime::get();
  Group* g = rt.initialized() ? rt.find("pp") : nullptr;
  if (g == nullptr || g->size() == 1) return nullptr;
  return std::make_unique<GroupComm>(*g);
}

}  // namespace megahost::core
