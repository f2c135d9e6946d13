// In-memory p2p for pipeline tests in one process (every rank a thread): sends and receives
// between an ordered pair match in posting order, as mh.dist/1 promises, and a send completes
// only once received, so a schedule that would deadlock on real ranks fails here too.
#pragma once

#include <ATen/ATen.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "megahost/core/engine/schedules.h"
#include "megahost/core/error.h"

namespace mhtest {

using megahost::core::cat;
using megahost::core::Error;
using megahost::core::P2PStep;
using megahost::core::PipelineComm;

struct Message {
  at::Tensor tensor;
  std::shared_ptr<bool> received;
};

class Mailboxes {
 public:
  void post(int64_t from, int64_t to, Message m) {
    std::lock_guard<std::mutex> lock(mu_);
    queues_[{from, to}].push_back(std::move(m));
    cv_.notify_all();
  }
  at::Tensor take(int64_t from, int64_t to) {
    std::unique_lock<std::mutex> lock(mu_);
    auto& q = queues_[{from, to}];
    if (!cv_.wait_for(lock, kHangGuard, [&] { return !q.empty(); }))
      throw Error(cat("mailbox: rank ", to, " never received from rank ", from, " (deadlock)"));
    Message m = std::move(q.front());
    q.pop_front();
    *m.received = true;
    cv_.notify_all();
    return m.tensor;
  }
  void wait_received(const std::shared_ptr<bool>& flag, int64_t from, int64_t to) {
    std::unique_lock<std::mutex> lock(mu_);
    if (!cv_.wait_for(lock, kHangGuard, [&] { return *flag; }))
      throw Error(cat("mailbox: rank ", to, " never took the message of rank ", from, " (deadlock)"));
  }

 private:
  // Not a timing assertion: only turns a deadlock into a failure instead of a hung test.
  static constexpr std::chrono::seconds kHangGuard{60};
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::pair<int64_t, int64_t>, std::deque<Message>> queues_;
};

class MailboxComm : public PipelineComm {
 public:
  MailboxComm(Mailboxes& box, int64_t rank, int64_t size) : box_(box), rank_(rank), size_(size) {}
  int64_t rank() const override { return rank_; }
  int64_t size() const override { return size_; }
  void exchange(P2PStep& s, const std::vector<int64_t>& shape, at::ScalarType) override {
    const int64_t next = (rank_ + 1) % size_, prev = (rank_ + size_ - 1) % size_;
    std::vector<std::pair<std::shared_ptr<bool>, int64_t>> sends;
    auto send = [&](const at::Tensor& t, int64_t to) {
      auto flag = std::make_shared<bool>(false);
      box_.post(rank_, to, {t.clone(), flag});
      sends.emplace_back(flag, to);
    };
    // Post in the documented order: forward direction, then backward direction.
    if (s.send_next.defined()) send(s.send_next, next);
    if (s.recv_prev) s.from_prev = box_.take(prev, rank_);
    if (s.send_prev.defined()) send(s.send_prev, prev);
    if (s.recv_next) s.from_next = box_.take(next, rank_);
    for (const auto& [flag, to] : sends) box_.wait_received(flag, rank_, to);
    for (const at::Tensor* t : {&s.from_prev, &s.from_next})
      if (t->defined() && t->sizes() != at::IntArrayRef(shape)) throw Error("mailbox: wrong shape");
  }

 private:
  Mailboxes& box_;
  int64_t rank_, size_;
};

}  // namespace mhtest
