// megahost core — a process group and its collectives over c10d (Gloo on CPU, NCCL on CUDA).
//
// Every collective has the runtime's timeout. Failures (also timeouts) throw core::Error naming
// the group, the operation, this rank and the group's sequence number of that call.
// A group of size 1 has no c10d backend: collectives are copies or no-ops.
// Tensors may be non-contiguous: contiguous copies are made and results copied back.
// Threading: every member calls the same collectives on a group in the same order; calls on one
// group are serialised by the caller.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "megahost/core/error.h"

namespace megahost::core {

enum class ReduceOp { Sum, Max, Min, Avg };  // Avg = Sum / group size

// A collective that failed or timed out (the message names group, operation, rank, sequence).
class CollectiveError : public Error {
 public:
  using Error::Error;
};

// An asynchronous collective. wait() completes it (copies back, divides for Avg, ...) and
// rethrows a failure as core::Error; later calls return at once.
class Work {
 public:
  Work(std::function<void()> complete, std::string what);
  ~Work();
  Work(const Work&) = delete;
  Work& operator=(const Work&) = delete;
  void wait();
  const std::string& what() const { return what_; }  // "all_reduce on group 'tp' (...)"

 private:
  std::function<void()> complete_;
  std::string what_;
  bool done_ = false;
};

class Group {
 public:
  struct Backend;  // c10d process group, owned (process_group.cpp)

  // ranks: global ranks of the members in group order; backend null when ranks.size() == 1.
  Group(std::string name, std::vector<int> ranks, int global_rank, std::unique_ptr<Backend> backend);
  ~Group();
  Group(const Group&) = delete;
  Group& operator=(const Group&) = delete;

  const std::string& name() const { return name_; }
  int rank() const { return index_; }  // this process's index in the group
  int size() const { return static_cast<int>(ranks_.size()); }
  int global_rank(int index) const;
  const std::vector<int>& ranks() const { return ranks_; }
  int64_t sequence_number() const { return seq_; }  // collectives called so far on this group

  // Each returns nullptr when !async (the collective is then complete), else a Work to wait().
  // In place: every member ends with op over every member's t.
  std::unique_ptr<Work> all_reduce(at::Tensor& t, ReduceOp op = ReduceOp::Sum, bool async = false);
  // out [size * n, ...] = cat of every member's in [n, ...] along dim 0, in group order.
  std::unique_ptr<Work> all_gather(const at::Tensor& in, at::Tensor& out, bool async = false);
  // in [size * n, ...] split in size chunks on dim 0; member i gets op over chunk i: out [n, ...].
  std::unique_ptr<Work> reduce_scatter(const at::Tensor& in, at::Tensor& out, ReduceOp op = ReduceOp::Sum,
                                       bool async = false);
  // In place: every member ends with member root_index's t.
  std::unique_ptr<Work> broadcast(at::Tensor& t, int root_index, bool async = false);
  // Point to point with member peer_index; a pair's sends and receives match in posting order.
  std::unique_ptr<Work> send(const at::Tensor& t, int peer_index, bool async = false);
  std::unique_ptr<Work> recv(at::Tensor& t, int peer_index, bool async = false);
  // Rows along dim 0: in_splits[i] rows of in go to member i, out_splits[i] rows of out come from
  // member i (empty = equal splits).
  std::unique_ptr<Work> all_to_all(const at::Tensor& in, at::Tensor& out, std::vector<int64_t> in_splits = {},
                                   std::vector<int64_t> out_splits = {}, bool async = false);
  void barrier();

 private:
  std::string describe(const char* op, int64_t seq) const;
  std::unique_ptr<Work> finish(const char* op, std::function<void()> complete, bool async);

  std::string name_;
  std::vector<int> ranks_;
  int global_rank_ = 0, index_ = 0;
  int64_t seq_ = 0;
  std::unique_ptr<Backend> backend_;
};

}  // namespace megahost::core
