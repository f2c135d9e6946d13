// The gpt plugin split into pipeline stages (1F1B and interleaved) in one process: every
// pipeline rank is a thread, p2p an in-memory mailbox (posting-order matching, as mh.dist/1).
// Losses and gradients equal the whole model's (tolerance 1e-5 relative, see gpt_pipeline.h).
#include <thread>

#include "gpt_pipeline.h"
#include "mailbox_comm.h"

namespace {

using namespace gptpp;

void run_threads(bool untied, int64_t pp, int64_t layers_per_virtual) {
  const RankResult ref = reference(untied);
  std::vector<std::vector<std::unique_ptr<core::Model>>> chunks;
  for (int64_t r = 0; r < pp; ++r) chunks.push_back(build_chunks(untied, pp, layers_per_virtual, r));
  mhtest::Mailboxes box;
  std::vector<RankResult> results(pp);
  std::vector<std::string> errors(pp);
  std::vector<std::thread> threads;
  for (int64_t r = 0; r < pp; ++r)
    threads.emplace_back([&, r] {
      try {
        mhtest::MailboxComm comm(box, r, pp);
        results[r] = run_step(chunks[r], &comm);
      } catch (const std::exception& e) {
        errors[r] = e.what();
      }
    });
  for (auto& t : threads) t.join();
  for (int64_t r = 0; r < pp; ++r) ASSERT_EQ(errors[r], "") << "rank " << r;
  expect_matches(ref, results);
}

TEST(GptPipelineThreads, OneFOneBTiedEmbeddings) { run_threads(false, 2, 0); }
TEST(GptPipelineThreads, OneFOneBUntiedEmbeddings) { run_threads(true, 2, 0); }
TEST(GptPipelineThreads, InterleavedTiedEmbeddings) { run_threads(false, 2, 1); }
TEST(GptPipelineThreads, InterleavedUntiedEmbeddings) { run_threads(true, 2, 1); }
TEST(GptPipelineThreads, FourStages) { run_threads(false, 4, 0); }

TEST(GptPipelineThreads, StagesHoldTheirLayersWithGlobalNames) {
  auto rank1 = build_chunks(false, 2, 1, 1);  // interleaved: layers 1 and 3, the last stage
  ASSERT_EQ(rank1.size(), 2u);
  std::vector<std::string> names0, names1;
  for (const auto& p : rank1[0]->params()) names0.push_back(p.name);
  for (const auto& p : rank1[1]->params()) names1.push_back(p.name);
  EXPECT_EQ(names0.front(), "decoder.layers.1.input_layernorm.weight");
  EXPECT_EQ(names0.back(), "decoder.layers.1.mlp.linear_fc2.bias");
  // The last stage: its own copy of the tied word embeddings, flagged shared, then layer 3 and
  // the final layernorm; no position embeddings.
  EXPECT_EQ(names1.front(), "embedding.word_embeddings.weight");
  EXPECT_EQ(rank1[1]->params().front().flags & MH_PARAM_SHARED_EMBEDDING, MH_PARAM_SHARED_EMBEDDING);
  EXPECT_EQ(names1[1], "decoder.layers.3.input_layernorm.weight");
  EXPECT_EQ(names1.back(), "decoder.final_layernorm.bias");
  // Same seeded init as the first stage's copy.
  auto rank0 = build_chunks(false, 2, 1, 0);
  EXPECT_TRUE(rank0[0]->params().front().data.equal(rank1[1]->params().front().data));
  EXPECT_EQ(rank1[1]->stage_io(2).shape, (std::vector<int64_t>{kSeq, 2, 16}));
}

}  // namespace
