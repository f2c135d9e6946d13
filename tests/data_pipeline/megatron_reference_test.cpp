// megahost's indices against vectors produced by Megatron-Core's algorithms run with numpy
// (data/README.md says how): splits, epochs, separate last epoch, all three GPT arrays, blending.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <string>

#include "megahost/core/data/blend.h"
#include "megahost/core/data/gpt_indices.h"
#include "megahost/core/data/numpy_math.h"
#include "megahost/core/error.h"

namespace data = megahost::core::data;
using nlohmann::json;

namespace {

std::vector<json> cases() {
  std::ifstream in(std::filesystem::path(MEGAHOST_SOURCE_DIR) / "tests" / "data_pipeline" / "data" /
                   "megatron_gpt_indices.jsonl");
  std::vector<json> out;
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) out.push_back(json::parse(line));
  return out;
}

void check_gpt(const json& in, const json& want) {
  const auto lengths = in.at("lengths").get<std::vector<int32_t>>();
  const auto ranges = data::split_sequence_ranges(in.at("split").get<std::string>(), static_cast<int64_t>(lengths.size()));
  for (int k = 0; k < 3; ++k) {
    const json& r = want.at("ranges").at(static_cast<size_t>(k));
    ASSERT_EQ(r.is_null(), !ranges[k].has_value()) << "split " << k;
    if (!r.is_null()) EXPECT_EQ((std::vector<int64_t>{ranges[k]->begin, ranges[k]->end}), r.get<std::vector<int64_t>>());
  }
  const auto& range = ranges[in.at("which").get<size_t>()];
  ASSERT_TRUE(range.has_value());
  data::GPTIndexConfig cfg;
  cfg.seq_length = in.at("L");
  cfg.seed = in.at("seed");
  if (!in.at("n").is_null()) cfg.num_samples = in.at("n").get<int64_t>();
  cfg.drop_last_partial = in.at("drop");
  cfg.add_extra_token = in.at("extra");
  if (want.value("error", false)) {
    EXPECT_THROW(data::build_gpt_indices(lengths, *range, cfg, "case"), megahost::core::Error);
    return;
  }
  const auto idx = data::build_gpt_indices(lengths, *range, cfg, "case");
  EXPECT_EQ(idx.plan.num_epochs, want.at("E").get<int64_t>());
  EXPECT_EQ(idx.plan.separate_last_epoch, want.at("sep").get<bool>());
  EXPECT_EQ(std::vector<int64_t>(idx.document_index.begin(), idx.document_index.end()),
            want.at("doc").get<std::vector<int64_t>>());
  EXPECT_EQ(idx.sample_index.to_vector(), want.at("sample").get<std::vector<int64_t>>());
  EXPECT_EQ(idx.shuffle_index.to_vector(), want.at("shuffle").get<std::vector<int64_t>>());
}

void check_blend(const json& in, const json& want) {
  const auto plan = data::plan_blend(in.at("w").get<std::vector<double>>(), in.at("T").get<int64_t>());
  EXPECT_EQ(plan.target_samples, want.at("tgt").get<std::vector<int64_t>>());
  EXPECT_EQ(plan.requested_samples, want.at("req").get<std::vector<int64_t>>());
  EXPECT_EQ(plan.size, want.at("size").get<int64_t>());
  // BlendedDataset normalises once more before the greedy walk, as Megatron's does.
  const auto b = data::build_blend_indices(data::normalize_weights(plan.weights, "w"), plan.size);
  EXPECT_EQ(std::vector<int64_t>(b.dataset_index.begin(), b.dataset_index.end()), want.at("di").get<std::vector<int64_t>>());
  EXPECT_EQ(b.dataset_sample_index, want.at("dsi").get<std::vector<int64_t>>());
}

}  // namespace

TEST(MegatronReference, AllCasesMatch) {
  const auto all = cases();
  ASSERT_EQ(all.size(), 40u);
  int gpt = 0, blend = 0, separate = 0;
  for (size_t i = 0; i < all.size(); ++i) {
    SCOPED_TRACE("case " + std::to_string(i) + ": " + all[i].at("input").dump().substr(0, 200));
    const json& in = all[i].at("input");
    if (in.at("kind") == "gpt") {
      ++gpt;
      separate += all[i].at("expected").value("sep", false);
      check_gpt(in, all[i].at("expected"));
    } else {
      ++blend;
      check_blend(in, all[i].at("expected"));
    }
  }
  EXPECT_EQ(gpt, 34);
  EXPECT_EQ(blend, 6);
  EXPECT_EQ(separate, 8);  // cases with a separately shuffled last epoch
}
