// The pieces of the layout-free format on their own: TP slices (plain, GLU halves), flat
// distributed-optimizer ranges, and a two-folder checkpoint read back as global tensors, where a
// resharding read touches only the pieces its slice needs.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "megahost/core/config.h"
#include "megahost/core/engine/checkpoint_reshard.h"
#include "megahost/core/instances.h"
#include "megahost/core/plugins.h"

namespace core = megahost::core;
namespace fs = std::filesystem;

namespace {

at::Tensor arange_of(std::vector<int64_t> shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return at::arange(n, at::kFloat).view(shape);
}

}  // namespace

TEST(ShardSlices, TpSlicesOfBothRanksRebuildTheTensor) {
  const at::Tensor whole = arange_of({6, 4});
  for (int dim : {0, 1}) {
    std::vector<int64_t> local = {6, 4};
    local[dim] /= 2;
    at::Tensor rebuilt = at::zeros({6, 4});
    for (int r = 0; r < 2; ++r) {
      const core::ShardSlice s = core::tp_slice(local, dim, false, r, 2);
      EXPECT_EQ(s.global_shape, (std::vector<int64_t>{6, 4}));
      const at::Tensor piece = core::extract_slice(whole, s);
      EXPECT_TRUE(piece.equal(whole.narrow(dim, r * local[dim], local[dim]))) << dim << " " << r;
      core::place_slice(rebuilt, s, piece);
    }
    EXPECT_TRUE(rebuilt.equal(whole)) << dim;
  }
}

// SwiGLU's linear_fc1 [gate; up]: TP rank r holds [gate part r; up part r], as the SDK slices it.
TEST(ShardSlices, GluHalvesAreSlicedHalfByHalf) {
  const at::Tensor whole = arange_of({8, 3});  // gate rows 0..3, up rows 4..7
  const core::ShardSlice s = core::tp_slice({4, 3}, 0, true, 1, 2);
  const at::Tensor piece = core::extract_slice(whole, s);
  EXPECT_TRUE(piece.equal(at::cat({whole.narrow(0, 2, 2), whole.narrow(0, 6, 2)}, 0)));
}

TEST(ShardSlices, FlatRangesOfATpSlice) {
  const at::Tensor whole = arange_of({4, 4});
  core::ShardSlice s = core::tp_slice({4, 2}, 1, false, 1, 2);  // columns 2..3
  s.flat_offset = 3;
  s.flat_numel = 4;
  const at::Tensor box = whole.narrow(1, 2, 2).contiguous().view(-1);
  EXPECT_TRUE(core::extract_slice(whole, s).equal(box.narrow(0, 3, 4)));
  at::Tensor rebuilt = at::zeros({4, 4});
  core::place_slice(rebuilt, s, box.narrow(0, 3, 4));
  EXPECT_TRUE(rebuilt.narrow(1, 2, 2).contiguous().view(-1).narrow(0, 3, 4).equal(box.narrow(0, 3, 4)));
  EXPECT_EQ(rebuilt.narrow(1, 0, 2).abs().sum().item<float>(), 0.0f);  // nothing outside the range
}

TEST(ShardSlices, FitRowsTrimsOrPadsWithZeros) {
  const at::Tensor t = arange_of({4, 2});
  EXPECT_TRUE(core::fit_rows(t, 3).equal(t.narrow(0, 0, 3)));
  const at::Tensor padded = core::fit_rows(t, 6);
  EXPECT_TRUE(padded.narrow(0, 0, 4).equal(t));
  EXPECT_EQ(padded.narrow(0, 4, 2).abs().sum().item<float>(), 0.0f);
  EXPECT_TRUE(core::is_vocab_tensor("optimizer/embedding.word_embeddings.weight.exp_avg"));
  EXPECT_FALSE(core::is_vocab_tensor("model/decoder.layers.0.mlp.linear_fc1.weight"));
}

// Two rank folders, each with its TP half of "model/w" [4, 2]. A read of rank 0's slice touches
// only rank_00000: a corrupted rank_00001 goes unnoticed there, and is named by a whole read.
TEST(ShardedCheckpoint, ReadsOnlyThePiecesASliceNeeds) {
  const core::PluginRegistry reg({MEGAHOST_BUILD_PLUGIN_DIR});
  auto fmt = core::create_checkpoint_format(reg, "megahost-tensors", core::ConfigSection{});
  const fs::path iter = fs::temp_directory_path() / ("mh-slices-" + std::to_string(::getpid())) / "iter_0000001";
  fs::remove_all(iter.parent_path());
  fs::create_directories(iter);
  const at::Tensor whole = arange_of({4, 2});
  for (int r = 0; r < 2; ++r) {
    const core::ShardSlice s = core::tp_slice({2, 2}, 0, false, r, 2);
    auto w = fmt->open_writer((iter / ("rank_0000" + std::to_string(r))).string());
    w->tensor("model/w", core::extract_slice(whole, s));
    w->blob("meta.json", nlohmann::json{{"world_size", 2}, {"rank", r}}.dump());
    w->blob(core::kShardsBlob, nlohmann::json{{"tensors", {{"model/w", core::slice_to_json(s)}}}}.dump());
    w->commit();
  }
  {
    core::ShardedCheckpoint ck(*fmt, iter.string());
    ASSERT_TRUE(ck.layout_free());
    EXPECT_EQ(ck.coverage_problem("model/w"), "");
    EXPECT_TRUE(ck.read_global("model/w").equal(whole));
  }
  {  // flip a payload byte of rank_00001
    const fs::path rank1 = iter / "rank_00001";
    const auto index = nlohmann::json::parse(std::ifstream(rank1 / "index.json"));
    std::fstream f(rank1 / "tensors.bin", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(index["entries"][0]["offset"].get<int64_t>());
    const char c = 0x7f;
    f.write(&c, 1);
  }
  core::ShardedCheckpoint ck(*fmt, iter.string());
  const core::ShardSlice rank0 = core::tp_slice({2, 2}, 0, false, 0, 2);
  EXPECT_TRUE(core::extract_slice(ck.read_region("model/w", rank0), rank0).equal(whole.narrow(0, 0, 2)));
  try {
    ck.read_global("model/w");
    ADD_FAILURE() << "a corrupted piece was read without an error";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("rank_00001: entry 'model/w'"), std::string::npos) << e.what();
  }
  fs::remove_all(iter.parent_path());
}
