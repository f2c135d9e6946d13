// mh.dist/1 through the C table, as a plugin sees it: every collective, sync and async, on 1, 2
// and 4 processes (Gloo, CPU). Results are exact (small integers in fp32 / int64).
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include "dist_table.h"
#include "megahost/core/parallel/world.h"
#include "multiprocess.h"

using namespace dist_test;
using megahost::core::ParallelRuntime;
using megahost::core::ParallelSizes;
using megahost::sdk::DLView;

namespace {

const mh_dist_group* world_group() {
  const mh_dist_group* g = dist().group(host(), "world");
  EXPECT_NE(g, nullptr);
  return g;
}

// Calls op synchronously or asynchronously (then work_wait) — both must give the same result.
template <typename F>
void call(bool async, const char* what, F&& op) {
  if (!async) {
    expect_ok(op(nullptr), what);
    return;
  }
  mh_dist_work* work = nullptr;
  expect_ok(op(&work), what);
  ASSERT_NE(work, nullptr) << what << ": no work handle";
  expect_ok(dist().work_wait(host(), work, cpu_stream()), what);
}

// Every collective on "world", checked against values each rank can compute alone.
void check_all_collectives(bool async) {
  const mh_dist_group* g = world_group();
  const int n = dist().group_size(host(), g), r = dist().group_rank(host(), g);
  const auto s = cpu_stream();
  for (int i = 0; i < n; ++i) EXPECT_EQ(dist().global_rank(host(), g, i), i);

  // all_reduce: SUM, MAX, MIN, AVG of [r + 1, 2 (r + 1), ...]; SUM on int64.
  const double sum = n * (n + 1) / 2.0;
  const std::pair<mh_reduce_op, double> ops[] = {
      {MH_REDUCE_SUM, sum}, {MH_REDUCE_MAX, n}, {MH_REDUCE_MIN, 1}, {MH_REDUCE_AVG, sum / n}};
  for (auto [op, want] : ops) {
    at::Tensor t = at::arange(1, 4, at::kFloat) * (r + 1);  // [3]
    DLView v(t);
    call(async, "all_reduce", [&](mh_dist_work** w) { return dist().all_reduce(host(), g, v.get(), op, s, w); });
    EXPECT_TRUE(at::equal(t, at::arange(1, 4, at::kFloat) * want)) << "op " << op << ": " << t;
  }
  at::Tensor ti = at::full({2}, r + 1, at::kLong);
  DLView vi(ti);
  call(async, "all_reduce int64", [&](mh_dist_work** w) { return dist().all_reduce(host(), g, vi.get(), MH_REDUCE_SUM, s, w); });
  EXPECT_EQ(ti[1].item<int64_t>(), n * (n + 1) / 2);

  // all_gather: in [2, 3] = r; out [n * 2, 3], rows 2i, 2i+1 = i.
  at::Tensor in = at::full({2, 3}, r, at::kFloat), out = at::empty({n * 2, 3}, at::kFloat);
  DLView vin(in), vout(out);
  call(async, "all_gather", [&](mh_dist_work** w) { return dist().all_gather(host(), g, vin.get(), vout.get(), s, w); });
  EXPECT_TRUE(at::equal(out, at::arange(n, at::kFloat).repeat_interleave(2).unsqueeze(1).expand({n * 2, 3})));

  // reduce_scatter: in [n * 2] = arange + r; member i gets chunk i summed (and averaged).
  for (mh_reduce_op op : {MH_REDUCE_SUM, MH_REDUCE_AVG}) {
    at::Tensor rs_in = at::arange(n * 2, at::kFloat) + r, rs_out = at::empty({2}, at::kFloat);
    DLView a(rs_in), b(rs_out);
    call(async, "reduce_scatter",
         [&](mh_dist_work** w) { return dist().reduce_scatter(host(), g, a.get(), b.get(), op, s, w); });
    at::Tensor chunk = at::arange(2 * r, 2 * r + 2, at::kFloat);
    at::Tensor want = chunk * n + sum - n;  // sum over members m of (chunk + m)
    if (op == MH_REDUCE_AVG) want = want / n;
    EXPECT_TRUE(at::allclose(rs_out, want)) << "op " << op << ": " << rs_out << " want " << want;
    EXPECT_TRUE(at::equal(rs_in, at::arange(n * 2, at::kFloat) + r)) << "reduce_scatter changed its input";
  }

  // broadcast from the last member.
  at::Tensor bt = at::full({4}, r * 10, at::kFloat);
  DLView vb(bt);
  call(async, "broadcast", [&](mh_dist_work** w) { return dist().broadcast(host(), g, vb.get(), n - 1, s, w); });
  EXPECT_TRUE(at::equal(bt, at::full({4}, (n - 1) * 10, at::kFloat)));

  // send/recv around the ring (posted together, waited together) when n > 1.
  if (n > 1) {
    at::Tensor to_next = at::full({3}, r, at::kFloat), from_prev = at::empty({3}, at::kFloat);
    DLView vs(to_next), vr(from_prev);
    mh_dist_work *ws = nullptr, *wr = nullptr;
    expect_ok(dist().send(host(), g, vs.get(), (r + 1) % n, s, &ws), "send");
    expect_ok(dist().recv(host(), g, vr.get(), (r + n - 1) % n, s, &wr), "recv");
    expect_ok(dist().work_wait(host(), ws, s), "send wait");
    expect_ok(dist().work_wait(host(), wr, s), "recv wait");
    EXPECT_TRUE(at::equal(from_prev, at::full({3}, (r + n - 1) % n, at::kFloat)));
  }

  // all_to_all, equal splits: in rows [i] = 100 r + i go to member i.
  at::Tensor a_in = at::arange(n, at::kFloat) + 100 * r, a_out = at::empty({n}, at::kFloat);
  DLView va(a_in), vo(a_out);
  call(async, "all_to_all",
       [&](mh_dist_work** w) { return dist().all_to_all(host(), g, va.get(), vo.get(), nullptr, nullptr, s, w); });
  EXPECT_TRUE(at::equal(a_out, at::arange(n, at::kFloat) * 100 + r)) << a_out;

  // all_to_all, uneven: member r sends (i + 1) rows to member i, all valued 100 r + i; so it
  // receives (r + 1) rows from every member m, valued 100 m + r.
  std::vector<int64_t> in_splits, out_splits;
  std::vector<at::Tensor> parts, wants;
  for (int i = 0; i < n; ++i) {
    in_splits.push_back(i + 1);
    out_splits.push_back(r + 1);
    parts.push_back(at::full({i + 1, 2}, 100 * r + i, at::kFloat));
    wants.push_back(at::full({r + 1, 2}, 100 * i + r, at::kFloat));
  }
  at::Tensor u_in = at::cat(parts), u_out = at::empty({n * (r + 1), 2}, at::kFloat);
  DLView vui(u_in), vuo(u_out);
  call(async, "all_to_all uneven", [&](mh_dist_work** w) {
    return dist().all_to_all(host(), g, vui.get(), vuo.get(), in_splits.data(), out_splits.data(), s, w);
  });
  EXPECT_TRUE(at::equal(u_out, at::cat(wants))) << u_out;

  expect_ok(dist().barrier(host(), g), "barrier");
}

void init_world(int world) {
  ParallelSizes sizes;
  sizes.world = world;
  ParallelRuntime::get().init(sizes, /*use_cuda=*/false, std::chrono::seconds(60));
}

}  // namespace

TEST(DistService, SingleProcessHasEveryGroupOfSizeOne) {
  ASSERT_FALSE(ParallelRuntime::get().initialized());
  for (const char* name : {"world", "tp", "pp", "dp", "cp", "dp-cp", "tp-cp", "tp-pp", "embedding", "ep",
                           "expert-tp", "expert-dp"}) {
    const mh_dist_group* g = dist().group(host(), name);
    ASSERT_NE(g, nullptr) << name;
    EXPECT_EQ(dist().group_size(host(), g), 1) << name;
    EXPECT_EQ(dist().group_rank(host(), g), 0) << name;
  }
  EXPECT_EQ(dist().group(host(), "no-such-group"), nullptr);
  EXPECT_EQ(dist().group(host(), nullptr), nullptr);
  check_all_collectives(false);
  check_all_collectives(true);
}

TEST(DistService, ErrorsAreHostErrorObjects) {
  const mh_dist_group* g = world_group();
  at::Tensor in = at::zeros({2}, at::kFloat), out = at::zeros({3}, at::kFloat);
  DLView vin(in), vout(out);
  const std::string msg = take_error(dist().all_gather(host(), g, vin.get(), vout.get(), cpu_stream(), nullptr));
  EXPECT_NE(msg.find("all_gather on group 'world'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("HINT"), std::string::npos) << msg;
  EXPECT_NE(take_error(dist().all_reduce(host(), nullptr, vin.get(), MH_REDUCE_SUM, cpu_stream(), nullptr)), "");
  EXPECT_NE(take_error(dist().all_reduce(host(), g, vin.get(), 42, cpu_stream(), nullptr)).find("unknown reduce op"),
            std::string::npos);
  EXPECT_NE(take_error(dist().work_wait(host(), nullptr, cpu_stream())), "");
}

class DistServiceWorld : public ::testing::TestWithParam<int> {};

TEST_P(DistServiceWorld, EveryCollectiveSyncAndAsync) {
  const int world = GetParam();
  if (!mp::is_worker()) {
    mp::run_workers(world);
    return;
  }
  init_world(world);
  check_all_collectives(false);
  check_all_collectives(true);
  ParallelRuntime::get().shutdown();
}

INSTANTIATE_TEST_SUITE_P(Gloo, DistServiceWorld, ::testing::Values(2, 4));

TEST(DistService, NonContiguousTensorsThroughTheCoreApi) {
  if (!mp::is_worker()) {
    mp::run_workers(2);
    return;
  }
  init_world(2);
  auto& g = ParallelRuntime::get().group("world");
  const int r = g.rank();
  at::Tensor base = at::arange(6, at::kFloat).view({2, 3}) + r;
  at::Tensor t = base.t();  // [3, 2], not contiguous
  g.all_reduce(t);
  EXPECT_TRUE(at::equal(base, at::arange(6, at::kFloat).view({2, 3}) * 2 + 1));
  at::Tensor out = at::zeros({2, 4}, at::kFloat).t();  // [4, 2] view, not contiguous
  g.all_gather(at::full({2, 2}, r, at::kFloat), out);
  EXPECT_TRUE(at::equal(out.contiguous(), at::cat({at::zeros({2, 2}), at::ones({2, 2})})));
  ParallelRuntime::get().shutdown();
}
