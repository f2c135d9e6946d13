// The gpt plugin's recipe checks: every impossible combination names its key and gives a hint;
// defaults follow Megatron's arguments.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <string>

#include "gpt_batches.h"
#include "test_host.h"

using mhtest::TestModel;

namespace {

constexpr int64_t kVocab = 64;

// Creates a model from `toml` and expects failure mentioning every one of `needles`.
void expect_config_error(const std::string& toml, std::initializer_list<const char*> needles,
                         int64_t vocab = kVocab) {
  TestModel m(toml, vocab);
  ASSERT_FALSE(m.ok()) << toml;
  for (const char* n : needles) EXPECT_NE(m.error().find(n), std::string::npos) << "'" << n << "' in: " << m.error();
  EXPECT_NE(m.error().find("HINT"), std::string::npos) << m.error();
}

const std::string kBase = "num_layers = 1\nhidden_size = 32\nnum_attention_heads = 4\nseq_length = 16\n";

at::IntArrayRef shape_of(const std::vector<mhtest::ParamRef>& ps, const std::string& name,
                         std::vector<int64_t>* storage) {
  for (const auto& p : ps)
    if (p.name == name) {
      *storage = p.data.sizes().vec();
      return *storage;
    }
  ADD_FAILURE() << "no parameter " << name;
  return {};
}

}  // namespace

TEST(GptConfig, HiddenSizeMustDivideByHeadsWhenKvChannelsIsDerived) {
  expect_config_error("num_layers = 1\nhidden_size = 30\nnum_attention_heads = 4\nseq_length = 8\n",
                      {"key 'num_attention_heads'", "not divisible"});
  TestModel ok("num_layers = 1\nhidden_size = 30\nnum_attention_heads = 4\nkv_channels = 8\nseq_length = 8\n",
               kVocab);
  EXPECT_TRUE(ok.ok()) << ok.error();  // Megatron allows it with explicit kv_channels
}

TEST(GptConfig, HeadsMustDivideByQueryGroups) {
  expect_config_error(kBase + "group_query_attention = true\nnum_query_groups = 3\n",
                      {"key 'num_query_groups'", "not divisible"});
}

TEST(GptConfig, QueryGroupsWithoutGroupQueryAttentionIsAnError) {
  expect_config_error(kBase + "num_query_groups = 2\n", {"key 'num_query_groups'", "group_query_attention = true"});
}

TEST(GptConfig, LearnedPositionsNeedSeqLengthWithinMaxPositionEmbeddings) {
  expect_config_error(kBase + "max_position_embeddings = 8\n", {"key 'seq_length'", "max_position_embeddings"});
  TestModel rope(kBase + "max_position_embeddings = 8\nposition_embedding_type = \"rope\"\n", kVocab);
  EXPECT_TRUE(rope.ok()) << rope.error();  // rope has no position table
}

TEST(GptConfig, UnknownNamesAreRejected) {
  expect_config_error(kBase + "normalization = \"layernorm\"\n", {"key 'normalization'", "RMSNorm"});
  expect_config_error(kBase + "position_embedding_type = \"relative\"\n", {"key 'position_embedding_type'", "rope"});
}

TEST(GptConfig, MissingRequiredKeysAndWrongTypesNameTheKey) {
  expect_config_error("hidden_size = 32\nnum_attention_heads = 4\nseq_length = 16\n", {"num_layers"});
  TestModel m(kBase + "hidden_dropout = \"lots\"\n", kVocab);
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.error().find("hidden_dropout"), std::string::npos) << m.error();
}

TEST(GptConfig, OutOfRangeNumbersAreRejected) {
  expect_config_error(kBase + "hidden_dropout = 1.0\n", {"key 'hidden_dropout'"});
  expect_config_error(kBase + "init_method_std = 0.0\n", {"key 'init_method_std'"});
  expect_config_error("num_layers = 0\nhidden_size = 32\nnum_attention_heads = 4\nseq_length = 16\n",
                      {"key 'num_layers'"});
  expect_config_error(kBase + "position_embedding_type = \"rope\"\nrotary_percent = 0.1\n",
                      {"key 'rotary_percent'", "kv_channels is 8"});
}

TEST(GptConfig, SwigluWithTinyHiddenNeedsAnExplicitFfnSize) {
  // int(8 * 16 / 3 / 64) * 64 = 0
  expect_config_error("num_layers = 1\nhidden_size = 16\nnum_attention_heads = 4\nseq_length = 16\nswiglu = true\n",
                      {"ffn_hidden_size"});
}

TEST(GptConfig, VocabAndIdComeFromTheHost) {
  TestModel no_vocab(kBase, 0);
  ASSERT_FALSE(no_vocab.ok());
  EXPECT_NE(no_vocab.error().find("padded_vocab_size"), std::string::npos) << no_vocab.error();
  TestModel wrong_id(kBase, kVocab, 1234, "bert");
  ASSERT_FALSE(wrong_id.ok());
  EXPECT_NE(wrong_id.error().find("unknown model id 'bert'"), std::string::npos) << wrong_id.error();
}

TEST(GptConfig, DefaultsFollowMegatronArguments) {
  std::vector<int64_t> s;
  {
    TestModel m(kBase, kVocab);  // ffn = 4h, kv_channels = h / heads, max positions = seq_length, tied
    ASSERT_TRUE(m.ok()) << m.error();
    const auto ps = m.params();
    EXPECT_EQ(shape_of(ps, "decoder.layers.0.mlp.linear_fc1.weight", &s), (at::IntArrayRef{128, 32}));
    EXPECT_EQ(shape_of(ps, "decoder.layers.0.self_attention.linear_qkv.weight", &s), (at::IntArrayRef{96, 32}));
    EXPECT_EQ(shape_of(ps, "decoder.layers.0.self_attention.linear_qkv.bias", &s), (at::IntArrayRef{96}));
    EXPECT_EQ(shape_of(ps, "embedding.position_embeddings.weight", &s), (at::IntArrayRef{16, 32}));
    EXPECT_EQ(ps.back().name, "decoder.final_layernorm.bias");
  }
  {
    // SwiGLU default width: int(8 * 96 / 3 / 64) * 64 = 256; fc1 doubles it
    TestModel m("num_layers = 1\nhidden_size = 96\nnum_attention_heads = 4\nseq_length = 16\nswiglu = true\n",
                kVocab);
    ASSERT_TRUE(m.ok()) << m.error();
    const auto ps = m.params();
    EXPECT_EQ(shape_of(ps, "decoder.layers.0.mlp.linear_fc1.weight", &s), (at::IntArrayRef{512, 96}));
    EXPECT_EQ(shape_of(ps, "decoder.layers.0.mlp.linear_fc2.weight", &s), (at::IntArrayRef{96, 256}));
  }
  {
    // add_qkv_bias keeps the QKV bias when add_bias_linear = false; GQA defaults to 1 group
    TestModel m(kBase + "add_bias_linear = false\nadd_qkv_bias = true\ngroup_query_attention = true\n", kVocab);
    ASSERT_TRUE(m.ok()) << m.error();
    const auto ps = m.params();
    EXPECT_EQ(shape_of(ps, "decoder.layers.0.self_attention.linear_qkv.bias", &s), (at::IntArrayRef{48}));
    for (const auto& p : ps)
      EXPECT_TRUE(p.name.find(".bias") == std::string::npos || p.name.find("linear_qkv") != std::string::npos ||
                  p.name.find("layernorm") != std::string::npos)
          << p.name;
  }
}

TEST(GptConfig, RopeScalingNeedsRopeAndFactorsOfAtLeastOne) {
  const std::string rope = kBase + "position_embedding_type = \"rope\"\n";
  {
    TestModel m(rope + "use_rope_scaling = true\nrope_scaling_factor = 32.0\n", kVocab);  // Llama 3.2's
    EXPECT_TRUE(m.ok()) << m.error();
  }
  expect_config_error(kBase + "use_rope_scaling = true\n", {"use_rope_scaling", "rope"});
  expect_config_error(rope + "use_rope_scaling = true\nrope_scaling_factor = 0.5\n", {"rope_scaling_factor", ">= 1"});
  {
    TestModel m(rope + "rotary_seq_len_interpolation_factor = 4\n", kVocab);  // an integer, as Megatron's
    EXPECT_TRUE(m.ok()) << m.error();
  }
  expect_config_error(rope + "rotary_seq_len_interpolation_factor = 0.5\n",
                      {"rotary_seq_len_interpolation_factor", ">= 1"});
}

TEST(GptConfig, AttentionBackendAndFlashFlag) {
  expect_config_error(kBase + "attention_backend = \"tensorrt\"\n", {"key 'attention_backend'", "flash"});
  expect_config_error(kBase + "attention_backend = \"math\"\nuse_flash_attn = true\n",
                      {"key 'use_flash_attn'", "attention_backend"});
  for (const char* ok : {"use_flash_attn = true\n", "attention_backend = \"cudnn\"\n", "bias_gelu_fusion = false\n"}) {
    TestModel m(kBase + ok, kVocab);
    EXPECT_TRUE(m.ok()) << ok << ": " << m.error();
  }
  TestModel reset(kBase + "attention_backend = \"auto\"\n", kVocab);  // libtorch's defaults again
  EXPECT_TRUE(reset.ok());
}

TEST(GptConfig, CudaGraphImplNamesItsLimits) {
  const std::string no_dropout = kBase + "hidden_dropout = 0.0\nattention_dropout = 0.0\n";
  // Dropout (0.1 each in kBase) records; under an activation recompute it is refused.
  for (const char* recompute : {"recompute_granularity = \"selective\"\n",
                                "recompute_granularity = \"full\"\nrecompute_method = \"uniform\"\n"
                                "recompute_num_layers = 1\n"})
    expect_config_error(kBase + recompute + "cuda_graph_impl = \"full_iteration\"\n",
                        {"key 'cuda_graph_impl'", "with activation recompute", "got 0.1 and 0.1",
                         "drop recompute_granularity"});
  // This test model lives on the CPU, where no graph can be recorded: with or without dropout,
  // and with a recompute that draws nothing, that is the error.
  for (const std::string& recipe : {kBase, no_dropout, no_dropout + "recompute_granularity = \"selective\"\n"})
    expect_config_error(recipe + "cuda_graph_impl = \"full_iteration\"\n",
                        {"key 'cuda_graph_impl'", "needs a CUDA device", "on cpu"});
  expect_config_error(no_dropout + "cuda_graph_impl = \"local\"\n", {"key 'cuda_graph_impl'", "is not built"});
  expect_config_error(no_dropout + "cuda_graph_impl = \"everything\"\n", {"unknown cuda_graph_impl 'everything'"});
  expect_config_error(no_dropout + "cuda_graph_impl = \"full_iteration\"\ncuda_graph_warmup_steps = 0\n",
                      {"key 'cuda_graph_warmup_steps'", "must be >= 1"});
  TestModel off(kBase + "cuda_graph_impl = \"none\"\ncuda_graph_warmup_steps = 5\n", kVocab);
  EXPECT_TRUE(off.ok()) << off.error();
}

// The host's TFLOP/s and MFU come from the plugin's count (mh.model.flops/1). It must be
// FORMATS.md §5 for the GPT-2 shape and Megatron's num_floating_point_operations under
// grouped-query attention and SwiGLU (which the GPT-2 formula over-counts).
TEST(GptConfig, TrainFlopsFollowMegatronsCount) {
  auto flops_of = [](const TestModel& m) {
    const auto* ext = static_cast<const mh_model_flops_ext*>(m.api()->get_extension(m.raw(), MH_EXT_MODEL_FLOPS));
    EXPECT_NE(ext, nullptr);
    double out = 0;
    if (ext != nullptr) EXPECT_EQ(ext->train_flops_per_sample(m.raw(), &out), nullptr);
    return out;
  };
  {
    TestModel m(kBase, kVocab);  // l 1, h 32, s 16, V 64
    ASSERT_TRUE(m.ok()) << m.error();
    const double s = 16, l = 1, h = 32, V = kVocab;
    EXPECT_DOUBLE_EQ(flops_of(m), 72 * s * l * h * h * (1 + s / (6 * h) + V / (12 * l * h)));
  }
  {
    TestModel m("num_layers = 2\nhidden_size = 64\nnum_attention_heads = 8\nseq_length = 16\n"
                "group_query_attention = true\nnum_query_groups = 2\nswiglu = true\nffn_hidden_size = 96\n"
                "add_bias_linear = false\nnormalization = \"RMSNorm\"\nposition_embedding_type = \"rope\"\n"
                "untie_embeddings_and_output_weights = true\n",
                kVocab);
    ASSERT_TRUE(m.ok()) << m.error();
    const double s = 16, l = 2, h = 64, heads = 8, groups = 2, ffn = 96, V = kVocab;
    const double megatron = 12 * s * l * h * h *
                            ((1 + groups / heads + s / h) * 1.0  // query projection = hidden
                             + (ffn / h) * 1.5                  // SwiGLU's gated fc1
                             + V / (2 * l * h));
    EXPECT_DOUBLE_EQ(flops_of(m), megatron);
    EXPECT_LT(flops_of(m), 72 * s * l * h * h * (1 + s / (6 * h) + V / (12 * l * h)));
  }
}
