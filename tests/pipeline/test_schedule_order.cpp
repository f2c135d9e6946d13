// The schedules' logic in one process: every pipeline rank is a thread, stages are fakes whose
// activations and gradients encode (stage, micro-batch), and the p2p is an in-memory mailbox
// that matches sends and receives per ordered pair in posting order (as mh.dist/1 does) and
// completes a send only when it is received. Checks the order of forwards and backwards against
// Megatron's, that every activation/gradient reaches the right stage and micro-batch, and that
// no rank waits forever (a hang guard turns a deadlock into an error).
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include "megahost/core/engine/schedules.h"
#include "mailbox_comm.h"
#include "megahost/core/error.h"

namespace megahost::core {
namespace {

using mhtest::MailboxComm;
using mhtest::Mailboxes;

double activation_code(int64_t stage, int64_t micro) { return 1e6 + stage * 1000 + micro; }
double gradient_code(int64_t stage, int64_t micro) { return 2e6 + stage * 1000 + micro; }

// Model chunk v of pipeline rank r = global stage v * pp + r of S = pp * vp.
class FakeStage : public ScheduleStage {
 public:
  FakeStage(int64_t chunk, int64_t stage, int64_t num_stages, std::vector<std::string>* trace,
            std::vector<std::string>* errors)
      : chunk_(chunk), stage_(stage), num_stages_(num_stages), trace_(trace), errors_(errors) {}

  Forward forward(const MicroBatch& batch, const at::Tensor& input, bool with_grad) override {
    const int64_t micro = batch.at(0).second.item<int64_t>();
    trace_->push_back(cat("F", chunk_, ".", micro));
    if (stage_ > 0) expect(input, activation_code(stage_ - 1, micro), "input");
    else if (input.defined()) errors_->push_back(cat("stage 0 got an input at micro-batch ", micro));
    Forward f;
    if (stage_ == num_stages_ - 1) f.loss = {static_cast<double>(micro), 1.0};
    else f.activation = at::full({2, 1, 3}, activation_code(stage_, micro), at::kDouble);
    if (with_grad) f.state = std::make_shared<int64_t>(micro);
    return f;
  }
  at::Tensor backward(std::shared_ptr<void> state, const at::Tensor& output_grad, double grad_scale) override {
    const int64_t micro = *static_cast<int64_t*>(state.get());
    trace_->push_back(cat("B", chunk_, ".", micro));
    if (grad_scale != 0.25) errors_->push_back(cat("grad_scale ", grad_scale));
    if (stage_ < num_stages_ - 1) expect(output_grad, gradient_code(stage_ + 1, micro), "output grad");
    return at::full({2, 1, 3}, gradient_code(stage_, micro), at::kDouble);
  }
  Model::StageIO stage_io(int64_t micro_batch_size) const override { return {{2, micro_batch_size, 3}, at::kDouble}; }

 private:
  void expect(const at::Tensor& t, double code, const char* what) {
    if (!t.defined() || t.numel() != 6 || (t != code).any().item<bool>())
      errors_->push_back(cat("stage ", stage_, ": wrong ", what, " (want ", code, ", got ",
                             t.defined() ? t.flatten()[0].item<double>() : -1.0, ")"));
  }
  int64_t chunk_, stage_, num_stages_;
  std::vector<std::string>* trace_;
  std::vector<std::string>* errors_;
};

struct RankResult {
  std::vector<std::string> trace, errors;
  std::vector<Loss> losses;
};

std::vector<RankResult> run_pipeline(int64_t pp, int64_t vp, int64_t num_microbatches, bool forward_only) {
  Mailboxes box;
  std::vector<RankResult> results(pp);
  std::vector<std::thread> threads;
  for (int64_t r = 0; r < pp; ++r)
    threads.emplace_back([&, r] {
      RankResult& res = results[r];
      try {
        MailboxComm comm(box, r, pp);
        std::vector<std::unique_ptr<FakeStage>> stages;
        ScheduleArgs args;
        for (int64_t v = 0; v < vp; ++v) {
          stages.push_back(std::make_unique<FakeStage>(v, v * pp + r, pp * vp, &res.trace, &res.errors));
          args.stages.push_back(stages.back().get());
        }
        args.comm = &comm;
        args.num_microbatches = num_microbatches;
        args.micro_batch_size = 1;
        args.grad_scale = 0.25;
        args.forward_only = forward_only;
        args.batch = [](int64_t m) { return MicroBatch{{"micro", at::scalar_tensor(m, at::kLong)}}; };
        args.before_last_backward = [&res](size_t chunk) { res.trace.push_back(cat("sync", chunk)); };
        res.losses = run_schedule(args);
      } catch (const std::exception& e) {
        res.errors.push_back(e.what());
      }
    });
  for (auto& t : threads) t.join();
  return results;
}

std::string joined(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : " ") + x;
  return s;
}

void expect_consistent(const std::vector<RankResult>& res, int64_t num_microbatches, bool forward_only) {
  const int64_t pp = static_cast<int64_t>(res.size());
  for (int64_t r = 0; r < pp; ++r) {
    EXPECT_TRUE(res[r].errors.empty()) << "rank " << r << ": " << joined(res[r].errors);
    if (r != pp - 1) {
      EXPECT_TRUE(res[r].losses.empty());
      continue;
    }
    ASSERT_EQ(static_cast<int64_t>(res[r].losses.size()), num_microbatches);
    for (int64_t m = 0; m < num_microbatches; ++m) EXPECT_EQ(res[r].losses[m].loss_sum, m);
  }
  if (forward_only)
    for (const auto& r : res)
      for (const auto& e : r.trace) EXPECT_EQ(e[0], 'F') << joined(r.trace);
}

TEST(PipelineSchedule, OneFOneBOrderAsMegatron) {
  const auto res = run_pipeline(2, 1, 4, false);
  expect_consistent(res, 4, false);
  // rank 0: warm-up of pp - rank - 1 = 1 forward, 3 steady 1F1B pairs, 1 cool-down backward.
  EXPECT_EQ(joined(res[0].trace), "F0.0 F0.1 B0.0 F0.2 B0.1 F0.3 B0.2 sync0 B0.3");
  EXPECT_EQ(joined(res[1].trace), "F0.0 B0.0 F0.1 B0.1 F0.2 B0.2 F0.3 sync0 B0.3");
}

TEST(PipelineSchedule, OneFOneBFourStages) {
  const auto res = run_pipeline(4, 1, 6, false);
  expect_consistent(res, 6, false);
  EXPECT_EQ(joined(res[0].trace), "F0.0 F0.1 F0.2 F0.3 B0.0 F0.4 B0.1 F0.5 B0.2 B0.3 B0.4 sync0 B0.5");
  EXPECT_EQ(joined(res[2].trace), "F0.0 F0.1 B0.0 F0.2 B0.1 F0.3 B0.2 F0.4 B0.3 F0.5 B0.4 sync0 B0.5");
  // Fewer micro-batches than stages: warm-up is capped by the micro-batch count.
  expect_consistent(run_pipeline(4, 1, 2, false), 2, false);
}

TEST(PipelineSchedule, InterleavedOrderAsMegatron) {
  // pp 2, 2 chunks, 4 micro-batches. Rank 0 warm-up: (pp - 0 - 1) * 2 + (vp - 1) * pp = 4
  // forwards; rank 1: 2. Forwards go through chunks in groups of pp micro-batches, backwards
  // through the chunks in reverse.
  const auto res = run_pipeline(2, 2, 4, false);
  expect_consistent(res, 4, false);
  EXPECT_EQ(joined(res[0].trace),
            "F0.0 F0.1 F1.0 F1.1 F0.2 B1.0 F0.3 B1.1 F1.2 B0.0 F1.3 B0.1 B1.2 sync1 B1.3 B0.2 sync0 B0.3");
  EXPECT_EQ(joined(res[1].trace),
            "F0.0 F0.1 F1.0 B1.0 F1.1 B1.1 F0.2 B0.0 F0.3 B0.1 F1.2 B1.2 F1.3 sync1 B1.3 B0.2 sync0 B0.3");
}

TEST(PipelineSchedule, InterleavedOtherShapes) {
  expect_consistent(run_pipeline(2, 2, 2, false), 2, false);  // micro-batches == pp: all warm-up
  expect_consistent(run_pipeline(2, 3, 6, false), 6, false);
  expect_consistent(run_pipeline(4, 2, 8, false), 8, false);
  expect_consistent(run_pipeline(3, 2, 3, false), 3, false);
}

TEST(PipelineSchedule, ForwardOnly) {
  expect_consistent(run_pipeline(2, 1, 4, true), 4, true);
  expect_consistent(run_pipeline(4, 1, 3, true), 3, true);
  expect_consistent(run_pipeline(2, 2, 4, true), 4, true);
  expect_consistent(run_pipeline(4, 2, 4, true), 4, true);
}

TEST(PipelineSchedule, SingleStageThroughThePipelinePath) {
  const auto res = run_pipeline(1, 1, 3, false);
  expect_consistent(res, 3, false);
  EXPECT_EQ(joined(res[0].trace), "F0.0 B0.0 F0.1 B0.1 F0.2 sync0 B0.2");
}

TEST(PipelineSchedule, InterleavedRefusesIndivisibleMicroBatches) {
  const auto res = run_pipeline(2, 2, 3, false);
  for (const auto& r : res) {
    ASSERT_EQ(r.errors.size(), 1u);
    EXPECT_NE(r.errors[0].find("number of microbatches (3) is not divisible by pipeline-model-parallel-size (2)"),
              std::string::npos)
        << r.errors[0];
    EXPECT_TRUE(r.trace.empty());  // refused before any work
  }
}

}  // namespace
}  // namespace megahost::core
