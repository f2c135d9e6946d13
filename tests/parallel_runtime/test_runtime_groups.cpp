// ParallelRuntime's named groups on several processes: members as Megatron's layout says, a
// working collective on each, embedding absent on middle stages, named timeouts.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ATen/ATen.h>

#include "dist_table.h"
#include "megahost/core/parallel/world.h"
#include "multiprocess.h"

using namespace dist_test;
using megahost::core::ParallelRuntime;
using megahost::core::ParallelSizes;

namespace {

// Every group this rank is in has Megatron's members, and all-reducing the global rank over
// it gives the sum of its members.
void check_groups(const ParallelSizes& s) {
  auto& rt = ParallelRuntime::get();
  const int rank = rt.rank();
  struct Named { const char* name; const char* axes; bool expert; };
  const Named named[] = {{"tp", "tp", false},       {"pp", "pp", false},       {"dp", "dp", false},
                         {"cp", "cp", false},       {"dp-cp", "dp-cp", false}, {"tp-cp", "tp-cp", false},
                         {"tp-pp", "tp-pp", false}, {"ep", "ep", true},        {"expert-tp", "tp", true},
                         {"expert-dp", "dp", true}};
  for (const auto& n : named) {
    const auto want = megahost::core::rank_group_of(s, n.axes, rank, n.expert);
    auto& g = rt.group(n.name);
    EXPECT_EQ(g.ranks(), want) << n.name;
    at::Tensor t = at::full({1}, rank, at::kLong);
    g.all_reduce(t);
    int64_t sum = 0;
    for (int r : want) sum += r;
    EXPECT_EQ(t.item<int64_t>(), sum) << n.name;
  }
  EXPECT_EQ(rt.group("world").size(), s.world);
  EXPECT_EQ(rt.tp_rank(), megahost::core::axis_rank(s, "tp", rank));
  EXPECT_EQ(rt.pp_rank(), megahost::core::axis_rank(s, "pp", rank));
  EXPECT_EQ(rt.dp_rank(), megahost::core::axis_rank(s, "dp", rank));
  EXPECT_EQ(rt.cp_rank(), megahost::core::axis_rank(s, "cp", rank));
}

ParallelSizes sizes(int world, int tp, int pp, int cp = 1) {
  ParallelSizes s;
  s.world = world;
  s.tp = tp;
  s.pp = pp;
  s.cp = cp;
  s.expert_tp = tp;
  return s;
}

}  // namespace

TEST(RuntimeGroups, Tp2Pp2MembersAndCollectives) {
  if (!mp::is_worker()) {
    mp::run_workers(4);
    return;
  }
  const auto s = sizes(4, 2, 2);
  ParallelRuntime::get().init(s, false, std::chrono::seconds(60));
  check_groups(s);
  // pp = 2: every rank is a first or last stage, so in an embedding group = its pp group.
  EXPECT_EQ(ParallelRuntime::get().group("embedding").ranks(), ParallelRuntime::get().group("pp").ranks());
  ParallelRuntime::get().shutdown();
}

TEST(RuntimeGroups, Cp2Ep2MembersAndCollectives) {
  if (!mp::is_worker()) {
    mp::run_workers(4);
    return;
  }
  auto s = sizes(4, 1, 1, 2);
  s.ep = 2;
  ParallelRuntime::get().init(s, false, std::chrono::seconds(60));
  check_groups(s);
  EXPECT_EQ(ParallelRuntime::get().group("dp-cp").size(), 4);
  ParallelRuntime::get().shutdown();
}

TEST(RuntimeGroups, EmbeddingAbsentOnMiddleStagesPp4) {
  if (!mp::is_worker()) {
    mp::run_workers(4);
    return;
  }
  const auto s = sizes(4, 1, 4);
  auto& rt = ParallelRuntime::get();
  rt.init(s, false, std::chrono::seconds(60));
  check_groups(s);
  const int rank = rt.rank();
  EXPECT_EQ(rt.pp_rank(), rank);
  const mh_dist_group* emb = dist().group(host(), "embedding");
  if (rank == 0 || rank == 3) {
    ASSERT_NE(emb, nullptr);
    EXPECT_EQ(dist().group_size(host(), emb), 2);
    EXPECT_EQ(dist().global_rank(host(), emb, 0), 0);
    EXPECT_EQ(dist().global_rank(host(), emb, 1), 3);
    at::Tensor t = at::full({2}, rank + 1.0, at::kFloat);
    megahost::sdk::DLView v(t);
    expect_ok(dist().all_reduce(host(), emb, v.get(), MH_REDUCE_SUM, cpu_stream(), nullptr), "embedding all_reduce");
    EXPECT_EQ(t[0].item<float>(), 5.0f);
  } else {
    EXPECT_EQ(emb, nullptr);
    EXPECT_EQ(rt.find("embedding"), nullptr);
    try {
      rt.group("embedding");
      ADD_FAILURE() << "group('embedding') on a middle stage did not throw";
    } catch (const megahost::core::Error& e) {
      EXPECT_NE(std::string(e.what()).find("'embedding'"), std::string::npos) << e.what();
    }
  }
  rt.shutdown();
}

TEST(RuntimeGroups, WorldSizeMismatchIsNamed) {
  if (!mp::is_worker()) {
    mp::run_workers(2);
    return;
  }
  try {
    ParallelRuntime::get().init(sizes(4, 2, 1), false, std::chrono::seconds(60));
    ADD_FAILURE() << "no error";
  } catch (const megahost::core::Error& e) {
    EXPECT_NE(std::string(e.what()).find("torchrun world has 2"), std::string::npos) << e.what();
  }
}

// Rank 1 skips a collective: rank 0's all_reduce times out (2 s) with an error naming the group,
// the operation, its rank and the sequence number. Rank 1 then waits on a FIFO until rank 0 has
// its error (opening a FIFO blocks until the other side opens it: no sleeps).
TEST(RuntimeGroups, MissingPeerGivesANamedTimeout) {
  if (!mp::is_worker()) {
    const std::string fifo = mp::shared_dir() + "/rank0_done";
    ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
    mp::run_workers(2);
    return;
  }
  auto& rt = ParallelRuntime::get();
  rt.init(sizes(2, 1, 1), false, std::chrono::seconds(2));
  auto& world = rt.group("world");
  at::Tensor t = at::ones({4}, at::kFloat);
  world.all_reduce(t);  // sequence number 0: both ranks
  const std::string fifo = mp::shared_dir() + "/rank0_done";
  if (rt.rank() == 1) {
    const int fd = open(fifo.c_str(), O_RDONLY);  // returns once rank 0 opened it for writing
    ASSERT_GE(fd, 0);
    close(fd);
    std::_Exit(::testing::Test::HasFailure() ? 1 : 0);  // the group is broken: skip its teardown
  }
  std::string msg;
  try {
    const mh_dist_group* g = dist().group(host(), "world");
    megahost::sdk::DLView v(t);
    mh_dist_work* work = nullptr;
    expect_ok(dist().all_reduce(host(), g, v.get(), MH_REDUCE_SUM, cpu_stream(), &work), "enqueue");
    msg = take_error(dist().work_wait(host(), work, cpu_stream()));
  } catch (...) {
    ADD_FAILURE() << "an exception crossed the C table";
  }
  const int fd = open(fifo.c_str(), O_WRONLY);
  if (fd >= 0) close(fd);
  EXPECT_NE(msg.find("all_reduce on group 'world'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("rank 0"), std::string::npos) << msg;
  EXPECT_NE(msg.find("sequence number 1"), std::string::npos) << msg;
  EXPECT_NE(msg.find("HINT"), std::string::npos) << msg;
  std::_Exit(::testing::Test::HasFailure() ? 1 : 0);
}
