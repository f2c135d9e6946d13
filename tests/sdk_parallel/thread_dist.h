// An in-process mh.dist/1 for tests: every rank is a thread with its own mh_host (host_data
// points at the rank), groups follow Megatron's order (tp fastest, then cp), and each collective
// is "deposit, rendezvous, compute from every member's input, rendezvous". Its semantics are
// those of mh_dist.h, so the SDK's regions and layers run exactly as over Gloo, in milliseconds.
// (The multi-process Gloo harness, tests/multiprocess, runs the same checks across processes.)
#pragma once

#include <ATen/ATen.h>

#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "../models/test_host.h"
#include "megahost/megahost.h"
#include "megahost/sdk/torch_interop.h"

namespace mhtest {

struct ThreadGroup {
  std::string name;
  std::vector<int> members;  // global ranks, in group order
  std::vector<at::Tensor> slots;
  std::mutex m;
  std::condition_variable cv;
  int arrived = 0;
  int64_t generation = 0;

  void rendezvous() {
    std::unique_lock<std::mutex> lock(m);
    const int64_t gen = generation;
    if (++arrived == static_cast<int>(members.size())) {
      arrived = 0;
      ++generation;
      cv.notify_all();
    } else {
      cv.wait(lock, [&] { return generation != gen; });
    }
  }
  int index_of(int global) const {
    for (size_t i = 0; i < members.size(); ++i)
      if (members[i] == global) return static_cast<int>(i);
    return -1;
  }
};

class ThreadWorld;

struct ThreadRank {
  ThreadWorld* world;
  int global;
  mh_host host;
};

class ThreadWorld {
 public:
  // world = tp * cp ranks; rank g has tp rank g % tp and cp rank g / tp (Megatron's tp-cp order).
  ThreadWorld(int tp, int cp) : tp_(tp), cp_(cp) {
    const int n = tp * cp;
    for (int c = 0; c < cp; ++c) {
      std::vector<int> m;
      for (int t = 0; t < tp; ++t) m.push_back(c * tp + t);
      add_group("tp", m);
    }
    for (int t = 0; t < tp; ++t) {
      std::vector<int> m;
      for (int c = 0; c < cp; ++c) m.push_back(c * tp + t);
      add_group("cp", m);
    }
    std::vector<int> all;
    for (int g = 0; g < n; ++g) all.push_back(g);
    add_group("world", all);
    for (int g = 0; g < n; ++g) {
      ranks_.push_back(std::make_unique<ThreadRank>());
      ThreadRank& r = *ranks_.back();
      r.world = this;
      r.global = g;
      r.host = *test_host();
      r.host.host_data = &r;
      r.host.get_service = &get_service;
    }
  }
  int size() const { return tp_ * cp_; }
  int tp() const { return tp_; }
  int cp() const { return cp_; }
  int tp_rank(int g) const { return g % tp_; }
  int cp_rank(int g) const { return g / tp_; }
  const mh_host* host(int g) const { return &ranks_[g]->host; }

  // Runs fn(global_rank) on one thread per rank; rethrows the first failure.
  void run(const std::function<void(int)>& fn) {
    std::vector<std::thread> threads;
    std::vector<std::exception_ptr> errors(size());
    for (int g = 0; g < size(); ++g)
      threads.emplace_back([&, g] {
        try {
          fn(g);
        } catch (...) {
          errors[g] = std::current_exception();
        }
      });
    for (auto& t : threads) t.join();
    for (auto& e : errors)
      if (e) std::rethrow_exception(e);
  }

 private:
  void add_group(const std::string& name, const std::vector<int>& members) {
    groups_.emplace_back();
    ThreadGroup& g = groups_.back();
    g.name = name;
    g.members = members;
    g.slots.resize(members.size());
    for (int m : members) lookup_[{name, m}] = &g;
  }

  static ThreadRank& rank_of(const mh_host* h) { return *static_cast<ThreadRank*>(h->host_data); }
  static ThreadGroup& group_of(const mh_dist_group* g) {
    return *reinterpret_cast<ThreadGroup*>(const_cast<mh_dist_group*>(g));
  }
  static int my_index(const mh_host* h, const mh_dist_group* g) { return group_of(g).index_of(rank_of(h).global); }

  static const mh_dist_group* MH_ABI group(const mh_host* h, const char* name) {
    ThreadRank& r = rank_of(h);
    auto it = r.world->lookup_.find({name, r.global});
    return it == r.world->lookup_.end() ? nullptr : reinterpret_cast<const mh_dist_group*>(it->second);
  }
  static int32_t MH_ABI group_rank(const mh_host* h, const mh_dist_group* g) { return my_index(h, g); }
  static int32_t MH_ABI group_size(const mh_host*, const mh_dist_group* g) {
    return static_cast<int32_t>(group_of(g).members.size());
  }
  static int32_t MH_ABI global_rank(const mh_host*, const mh_dist_group* g, int32_t i) { return group_of(g).members[i]; }

  static at::Tensor reduce(const std::vector<at::Tensor>& xs, mh_reduce_op op) {
    at::Tensor acc = xs[0].clone();
    for (size_t i = 1; i < xs.size(); ++i) {
      if (op == MH_REDUCE_MAX) acc = at::maximum(acc, xs[i]);
      else if (op == MH_REDUCE_MIN) acc = at::minimum(acc, xs[i]);
      else acc = acc + xs[i];
    }
    if (op == MH_REDUCE_AVG) acc = acc / static_cast<double>(xs.size());
    return acc;
  }

  static mh_error* MH_ABI all_reduce(const mh_host* h, const mh_dist_group* gp, DLTensor* inout, mh_reduce_op op,
                                     mh_stream, mh_dist_work** work) {
    if (work) *work = nullptr;
    ThreadGroup& g = group_of(gp);
    const int i = my_index(h, gp);
    at::Tensor t = megahost::sdk::to_torch(inout);
    g.slots[i] = t;
    g.rendezvous();
    const at::Tensor result = reduce(g.slots, op);
    g.rendezvous();
    t.copy_(result);
    return nullptr;
  }
  static mh_error* MH_ABI all_gather(const mh_host* h, const mh_dist_group* gp, const DLTensor* in, DLTensor* out,
                                     mh_stream, mh_dist_work** work) {
    if (work) *work = nullptr;
    ThreadGroup& g = group_of(gp);
    g.slots[my_index(h, gp)] = megahost::sdk::to_torch(in);
    g.rendezvous();
    const at::Tensor result = at::cat(g.slots, 0);
    g.rendezvous();
    megahost::sdk::to_torch(out).copy_(result);
    return nullptr;
  }
  static mh_error* MH_ABI reduce_scatter(const mh_host* h, const mh_dist_group* gp, const DLTensor* in,
                                         DLTensor* out, mh_reduce_op op, mh_stream, mh_dist_work** work) {
    if (work) *work = nullptr;
    ThreadGroup& g = group_of(gp);
    const int i = my_index(h, gp);
    g.slots[i] = megahost::sdk::to_torch(in);
    g.rendezvous();
    std::vector<at::Tensor> chunks;
    for (const auto& s : g.slots) chunks.push_back(s.chunk(static_cast<int64_t>(g.members.size()), 0)[i]);
    const at::Tensor result = reduce(chunks, op);
    g.rendezvous();
    megahost::sdk::to_torch(out).copy_(result);
    return nullptr;
  }
  static mh_error* MH_ABI broadcast(const mh_host* h, const mh_dist_group* gp, DLTensor* inout, int32_t root,
                                    mh_stream, mh_dist_work** work) {
    if (work) *work = nullptr;
    ThreadGroup& g = group_of(gp);
    at::Tensor t = megahost::sdk::to_torch(inout);
    g.slots[my_index(h, gp)] = t;
    g.rendezvous();
    const at::Tensor result = g.slots[root].clone();
    g.rendezvous();
    t.copy_(result);
    return nullptr;
  }
  static mh_error* MH_ABI unsupported_p2p(const mh_host* h, const mh_dist_group*, const DLTensor*, int32_t, mh_stream,
                                          mh_dist_work**) {
    return h->error_new(h, MH_ERR_UNSUPPORTED, "thread dist: no point-to-point");
  }
  static mh_error* MH_ABI unsupported_recv(const mh_host* h, const mh_dist_group*, DLTensor*, int32_t, mh_stream,
                                           mh_dist_work**) {
    return h->error_new(h, MH_ERR_UNSUPPORTED, "thread dist: no point-to-point");
  }
  static mh_error* MH_ABI unsupported_a2a(const mh_host* h, const mh_dist_group*, const DLTensor*, DLTensor*,
                                          const int64_t*, const int64_t*, mh_stream, mh_dist_work**) {
    return h->error_new(h, MH_ERR_UNSUPPORTED, "thread dist: no all_to_all");
  }
  static mh_error* MH_ABI barrier(const mh_host*, const mh_dist_group* gp) {
    group_of(gp).rendezvous();
    return nullptr;
  }
  static mh_error* MH_ABI work_wait(const mh_host*, mh_dist_work*, mh_stream) { return nullptr; }

  static const void* MH_ABI get_service(const mh_host* h, const char* id) {
    static const mh_dist_service dist = {MH_TABLE_HEADER(mh_dist_service),
                                         group,
                                         group_rank,
                                         group_size,
                                         global_rank,
                                         all_reduce,
                                         all_gather,
                                         reduce_scatter,
                                         broadcast,
                                         unsupported_p2p,
                                         unsupported_recv,
                                         unsupported_a2a,
                                         barrier,
                                         work_wait};
    // Ranks log from several threads at once: drop messages (the test host's log is not locked).
    static const mh_log_service quiet = {
        MH_TABLE_HEADER(mh_log_service),
        [](const mh_host*, mh_log_level, const char*, const char*, int32_t, const char*) {},
        [](const mh_host*) { return MH_LOG_ERROR; }};
    if (std::string(id) == MH_SERVICE_DIST) return &dist;
    if (std::string(id) == MH_SERVICE_LOG) return &quiet;
    return host_get_service(h, id);
  }

  int tp_, cp_;
  std::deque<ThreadGroup> groups_;
  std::map<std::pair<std::string, int>, ThreadGroup*> lookup_;
  std::vector<std::unique_ptr<ThreadRank>> ranks_;
};

}  // namespace mhtest
