// Hugging Face <-> megahost conversion. The fixtures of tests/data/hf/ (tiny GPT-2, Llama and
// Mistral checkpoints with reference logits from tests/convert/make_hf_fixtures.py, a
// hand-written float64 forward independent of megahost) are converted and run through the gpt
// plugin on CPU in fp32: logits must match within 1e-4 (max abs diff). HF -> megahost -> HF
// must give back every tensor bit for bit and the same config.json; bad inputs are refused
// naming the file and tensor.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>
#include <tuple>

#include "megahost/core/config.h"
#include "megahost/core/convert/hf.h"
#include "megahost/core/convert/safetensors.h"
#include "megahost/core/engine/checkpointing.h"
#include "megahost/core/instances.h"
#include "megahost/core/plugins.h"
#include "hf_test_util.h"

namespace core = megahost::core;
namespace fs = std::filesystem;
using hf_test::expect_identical_tensors;
using hf_test::fixture;
using hf_test::TempDir;

namespace {

const core::PluginRegistry& registry() {
  static const core::PluginRegistry reg({MEGAHOST_BUILD_PLUGIN_DIR});
  return reg;
}

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// The converted checkpoint loaded into the gpt plugin as `megahost run` would (recipe [model]).
std::unique_ptr<core::Model> load_converted(const fs::path& mh_dir, int64_t padded_vocab,
                                            const std::string& override_key = "", const std::string& value = "") {
  toml::table recipe = toml::parse(read_text(mh_dir / "recipe.toml"));
  if (!override_key.empty()) {
    auto* model = recipe["model"].as_table();
    if (value == "true" || value == "false")
      model->insert_or_assign(override_key, value == "true");
    else if (!value.empty() && (std::isdigit(static_cast<unsigned char>(value[0])) != 0))
      model->insert_or_assign(override_key, std::stod(value));
    else
      model->insert_or_assign(override_key, value);
  }
  std::ostringstream model_toml;
  model_toml << *recipe["model"].as_table();
  core::ModelOptions opts;
  opts.padded_vocab_size = padded_vocab;
  auto model = core::create_model(registry(), "gpt",
                                   core::parse_config_section(model_toml.str(), "recipe.toml", "model"), opts);
  auto fmt = core::create_checkpoint_format(registry(), "megahost-tensors", core::ConfigSection{});
  core::CheckpointParts parts;
  parts.chunks = {model.get()};
  core::LoadOptions no_state;
  no_state.load_optimizer = false;
  no_state.load_rng = false;
  const auto it = core::latest_checkpoint(mh_dir.string());
  EXPECT_TRUE(it.has_value());
  core::load_checkpoint(*fmt, mh_dir.string(), *it, parts, no_state);
  model->set_training(false);
  return model;
}

// Max |logits - reference| of the converted fixture (a [model] key overridden when asked).
double logits_diff(const std::string& name, const std::string& override_key = "", const std::string& value = "",
                   const core::HfConvertOptions& convert_opts = {}) {
  TempDir out(name);
  core::convert_hf_to_megahost(registry(), fixture(name).string(), out.path().string(), convert_opts);
  const auto ref = nlohmann::json::parse(read_text(fixture(name) / "reference.json"));
  const auto tokens_vec = ref["tokens"].get<std::vector<int64_t>>();
  const auto shape = ref["logits_shape"].get<std::vector<int64_t>>();  // [s, V]
  const std::string raw = read_text(fixture(name) / ref["logits_file"].get<std::string>());
  EXPECT_EQ(raw.size(), static_cast<size_t>(shape[0] * shape[1]) * 4);
  const at::Tensor expected = at::from_blob(const_cast<char*>(raw.data()), shape, at::kFloat).clone();

  auto model = load_converted(out.path(), shape[1], override_key, value);
  const at::Tensor tokens = at::tensor(tokens_vec, at::kLong).unsqueeze(0);  // [1, s]
  const at::Tensor logits = model->logits(tokens).squeeze(0);                 // [s, V]
  EXPECT_EQ(logits.sizes(), expected.sizes());
  // Not vacuous: the logits vary by far more than the tolerance.
  EXPECT_GT(expected.std().item<double>(), 0.1);
  return (logits - expected).abs().max().item<double>();
}

void expect_reference_logits(const std::string& name) {
  const double max_diff = logits_diff(name);
  std::printf("%s: max |logits - reference| = %.3g\n", name.c_str(), max_diff);
  EXPECT_LE(max_diff, 1e-4) << name;
}

// The recipe.toml that HF -> megahost writes for a fixture.
toml::table converted_recipe(const std::string& name) {
  TempDir mh(name + "-recipe");
  core::convert_hf_to_megahost(registry(), fixture(name).string(), mh.path().string());
  return toml::parse(read_text(mh.path() / "recipe.toml"));
}

std::string convert_error(const fs::path& hf_dir) {
  TempDir out("err");
  try {
    core::convert_hf_to_megahost(registry(), hf_dir.string(), out.path().string());
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

// A copy of a fixture whose model.safetensors holds `edit`'s tensors instead.
fs::path edited_copy(const TempDir& dir, const std::string& name,
                     const std::function<void(std::vector<std::pair<std::string, at::Tensor>>&)>& edit) {
  const fs::path out = dir.path() / name;
  fs::create_directories(out);
  fs::copy_file(fixture(name) / "config.json", out / "config.json");
  const core::SafetensorsFolder src(fixture(name).string());
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  for (const auto& [n, e] : src.entries()) tensors.emplace_back(n, src.read(n));
  edit(tensors);
  std::vector<core::SafetensorsWriter::Spec> specs;
  for (const auto& [n, t] : tensors) specs.push_back({n, t.scalar_type(), t.sizes().vec()});
  core::SafetensorsWriter w((out / "model.safetensors").string(), specs, {});
  for (const auto& [n, t] : tensors) w.write(n, t);
  w.close();
  return out;
}

}  // namespace

TEST(HfConvert, Gpt2LogitsEqualTheReference) { expect_reference_logits("gpt2"); }
TEST(HfConvert, Gpt2NeedsTheTanhGelu) {
  // gelu_new is GeLU's tanh form: with the exact erf GeLU the logits leave the tolerance.
  EXPECT_GT(logits_diff("gpt2", "gelu_approximation", "none"), 1e-4);
}
TEST(HfConvert, LlamaLogitsEqualTheReference) { expect_reference_logits("llama"); }
TEST(HfConvert, MistralLogitsEqualTheReference) { expect_reference_logits("mistral"); }
// Llama 3.1's rope_scaling ("llama3", factor 8): the recipe gets use_rope_scaling and
// rope_scaling_factor, and the logits equal the reference's, which scales the frequencies.
TEST(HfConvert, Llama31RopeScalingLogitsEqualTheReference) {
  expect_reference_logits("llama31");
  // Not vacuous: the same model without the scaling leaves the tolerance.
  const double unscaled = logits_diff("llama31", "use_rope_scaling", "false");
  std::printf("llama31 without the scaling: max |logits - reference| = %.3g\n", unscaled);
  EXPECT_GT(unscaled, 1e-3);
}
// Qwen2: Llama with q / k / v biases (add_qkv_bias), tied embeddings, rope_theta 1e6.
TEST(HfConvert, Qwen2LogitsEqualTheReference) {
  expect_reference_logits("qwen2");
  const toml::table recipe = converted_recipe("qwen2");
  EXPECT_EQ(recipe["model"]["add_qkv_bias"].value<bool>(), std::optional<bool>(true));
  EXPECT_EQ(recipe["model"]["add_bias_linear"].value<bool>(), std::optional<bool>(false));
}
// Qwen3: q / k RMS-normed per head (qk_layernorm), head_dim 32 with 4 heads over hidden 64.
TEST(HfConvert, Qwen3LogitsEqualTheReference) {
  expect_reference_logits("qwen3");
  const toml::table recipe = converted_recipe("qwen3");
  EXPECT_EQ(recipe["model"]["qk_layernorm"].value<bool>(), std::optional<bool>(true));
  EXPECT_EQ(recipe["model"]["kv_channels"].value<int64_t>(), std::optional<int64_t>(32));
}
// "linear" rope_scaling (factor 4): rotary_seq_len_interpolation_factor divides the positions.
TEST(HfConvert, LinearRopeScalingLogitsEqualTheReference) {
  expect_reference_logits("llama_linear");
  EXPECT_GT(logits_diff("llama_linear", "rotary_seq_len_interpolation_factor", "1.0"), 1e-3);
}

// Written for TP2 x PP2 (vocabulary padded to 256), loaded by one process (128 rows): the load
// reshards (assembles each tensor from the four rank folders, drops the padding rows) and the
// logits still equal the reference.
TEST(HfConvert, Tp2Pp2CheckpointLoadedByOneProcessGivesTheReferenceLogits) {
  core::HfConvertOptions opts;
  opts.target_tp = 2;
  opts.target_pp = 2;
  for (const char* name : {"gpt2", "llama", "qwen2", "qwen3"}) {
    const double max_diff = logits_diff(name, "", "", opts);
    std::printf("%s via tp2 x pp2: max |logits - reference| = %.3g\n", name, max_diff);
    EXPECT_LE(max_diff, 1e-4) << name;
  }
}

TEST(HfConvert, RoundTripIsBitIdentical) {
  for (const char* name : {"gpt2", "llama", "mistral", "llama31", "llama_linear", "qwen2", "qwen3"}) {
    TempDir mh(std::string("rt-mh-") + name), hf(std::string("rt-hf-") + name);
    core::convert_hf_to_megahost(registry(), fixture(name).string(), mh.path().string());
    core::convert_megahost_to_hf(registry(), mh.path().string(), hf.path().string());
    expect_identical_tensors(fixture(name), hf.path());
    EXPECT_EQ(nlohmann::json::parse(read_text(hf.path() / "config.json")),
              nlohmann::json::parse(read_text(fixture(name) / "config.json")))
        << name;
  }
}

// Written for TP2 x PP2 (four rank folders of slices, the vocabulary padded to 128 x 2) and
// read back from them: still bit-identical. TP2 x PP1 and TP1 x PP2 too, for Llama's GLU halves.
TEST(HfConvert, RoundTripThroughTp2Pp2IsBitIdentical) {
  for (const char* name : {"gpt2", "llama", "mistral", "qwen2", "qwen3"})
    for (const auto& [tp, pp] : {std::pair{2, 2}, std::pair{2, 1}, std::pair{1, 2}}) {
      const std::string tag = std::string(name) + "-tp" + std::to_string(tp) + "pp" + std::to_string(pp);
      TempDir mh("rt-mh-" + tag), hf("rt-hf-" + tag);
      core::HfConvertOptions opts;
      opts.target_tp = tp;
      opts.target_pp = pp;
      core::convert_hf_to_megahost(registry(), fixture(name).string(), mh.path().string(), opts);
      const fs::path iter = core::iteration_dir(mh.path().string(), 0);
      if (tp * pp > 1) {
        EXPECT_TRUE(fs::exists(iter / ("rank_0000" + std::to_string(tp * pp - 1)))) << tag;
        auto fmt = core::create_checkpoint_format(registry(), "megahost-tensors", core::ConfigSection{});
        auto last = fmt->open_reader((iter / ("rank_0000" + std::to_string(tp * pp - 1))).string());
        const auto meta = nlohmann::json::parse(last->blob("meta.json"));
        EXPECT_EQ(meta["layout"], "tp" + std::to_string(tp) + ".pp" + std::to_string(pp) + ".cp1.dp1") << tag;
        EXPECT_EQ(meta["parallel"]["pp_rank"], pp - 1) << tag;
        // The embedding's slice: half the padded vocabulary (128 x tp) on each TP rank of stage 0.
        auto first = fmt->open_reader((iter / "rank_00000").string());
        const auto shards = nlohmann::json::parse(first->blob("shards.json"));
        const auto& emb = shards["tensors"]["model/embedding.word_embeddings.weight"];
        EXPECT_EQ(emb["global_shape"][0], 128 * tp) << tag;
        EXPECT_EQ(emb["lengths"][0], 128) << tag;
      }
      core::convert_megahost_to_hf(registry(), mh.path().string(), hf.path().string());
      expect_identical_tensors(fixture(name), hf.path());
      EXPECT_EQ(nlohmann::json::parse(read_text(hf.path() / "config.json")),
                nlohmann::json::parse(read_text(fixture(name) / "config.json")))
          << tag;
    }
}

TEST(HfConvert, CheckpointWithoutHfConfigGetsAConfigFromTheRecipe) {
  // A megahost-trained model (no stored config.json): the HF config is derived from [model].
  for (const char* name : {"llama", "llama31", "llama_linear", "qwen2", "qwen3"}) {
    SCOPED_TRACE(name);
    TempDir mh(std::string("derived-mh-") + name), hf(std::string("derived-hf-") + name);
    core::convert_hf_to_megahost(registry(), fixture(name).string(), mh.path().string());
    {  // the same tensors re-saved without the hf/ blobs
      auto fmt = core::create_checkpoint_format(registry(), "megahost-tensors", core::ConfigSection{});
      const std::string iter = core::iteration_dir(mh.path().string(), 0), copy = iter + "-copy";
      auto r = fmt->open_reader(iter);
      auto w = fmt->open_writer(copy);
      for (const auto& e : r->list()) {
        if (e.is_blob) {
          if (e.name.rfind("hf/", 0) != 0) w->blob(e.name, r->blob(e.name));
          continue;
        }
        at::Tensor t = at::empty(e.shape, e.dtype);
        r->tensor_into(e.name, t);
        w->tensor(e.name, t);
      }
      w->commit();
      r.reset();
      fs::remove_all(iter);
      fs::rename(copy, iter);
    }
    core::convert_megahost_to_hf(registry(), mh.path().string(), hf.path().string());
    const auto cfg = nlohmann::json::parse(read_text(hf.path() / "config.json"));
    const auto original = nlohmann::json::parse(read_text(fixture(name) / "config.json"));
    for (const char* key : {"architectures", "model_type", "num_key_value_heads", "intermediate_size", "rope_theta",
                            "tie_word_embeddings", "hidden_size", "num_hidden_layers", "rms_norm_eps"})
      EXPECT_EQ(cfg[key], original[key]) << key;
    EXPECT_EQ(cfg.value("head_dim", 0), original.value("head_dim", 16));  // 16 = hidden / heads where absent
    EXPECT_EQ(cfg.contains("attention_bias"), original.contains("attention_bias"));  // Qwen2 has none
    EXPECT_EQ(cfg.contains("rope_scaling"), original.contains("rope_scaling"));
    if (original.contains("rope_scaling")) EXPECT_EQ(cfg["rope_scaling"], original["rope_scaling"]);
    expect_identical_tensors(fixture(name), hf.path());
  }
}

TEST(HfConvert, ShardedCheckpointConvertsLikeOneFile) {
  // model.safetensors.index.json + two shards, as big HF models are published.
  TempDir dir("sharded"), mh("sharded-mh"), hf("sharded-hf");
  const fs::path sharded = dir.path() / "llama";
  fs::create_directories(sharded);
  fs::copy_file(fixture("llama") / "config.json", sharded / "config.json");
  const core::SafetensorsFolder src(fixture("llama").string());
  std::vector<core::SafetensorsWriter::Spec> shard_specs[2];
  nlohmann::json weight_map;
  int i = 0;
  for (const auto& [n, e] : src.entries()) {
    const int shard = i++ % 2;
    shard_specs[shard].push_back({n, e.dtype, e.shape});
    weight_map[n] = "model-0000" + std::to_string(shard + 1) + "-of-00002.safetensors";
  }
  for (int shard = 0; shard < 2; ++shard) {
    core::SafetensorsWriter w((sharded / ("model-0000" + std::to_string(shard + 1) + "-of-00002.safetensors")).string(),
                              shard_specs[shard], {});
    for (const auto& s : shard_specs[shard]) w.write(s.name, src.read(s.name));
    w.close();
  }
  std::ofstream(sharded / "model.safetensors.index.json") << nlohmann::json{{"weight_map", weight_map}}.dump();
  core::convert_hf_to_megahost(registry(), sharded.string(), mh.path().string());
  core::convert_megahost_to_hf(registry(), mh.path().string(), hf.path().string());
  expect_identical_tensors(fixture("llama"), hf.path());
}

TEST(HfConvert, RefusesAMissingTensorNamingIt) {
  TempDir dir("missing");
  const fs::path bad = edited_copy(dir, "llama", [](auto& t) {
    t.erase(std::find_if(t.begin(), t.end(), [](auto& p) { return p.first == "model.layers.1.mlp.up_proj.weight"; }));
  });
  const std::string err = convert_error(bad);
  EXPECT_NE(err.find((bad / "model.safetensors").string() + ": missing tensor 'model.layers.1.mlp.up_proj.weight'"),
            std::string::npos) << err;
  EXPECT_NE(err.find("HINT"), std::string::npos) << err;
}

TEST(HfConvert, RefusesAWrongShapeNamingFileAndTensor) {
  TempDir dir("shape");
  const fs::path bad = edited_copy(dir, "gpt2", [](auto& t) {
    for (auto& [n, x] : t)
      if (n == "transformer.h.0.attn.c_attn.weight") x = x.narrow(1, 0, 150).contiguous();
  });
  const std::string err = convert_error(bad);
  EXPECT_NE(err.find((bad / "model.safetensors").string()), std::string::npos) << err;
  EXPECT_NE(err.find("'transformer.h.0.attn.c_attn.weight' has shape [64, 150], expected [64, 192]"),
            std::string::npos) << err;
  EXPECT_NE(err.find("HINT"), std::string::npos) << err;
}

TEST(HfConvert, RefusesAnUnknownTensor) {
  TempDir dir("extra");
  const fs::path bad = edited_copy(dir, "llama", [](auto& t) { t.emplace_back("model.extra.weight", at::ones({4})); });
  const std::string err = convert_error(bad);
  EXPECT_NE(err.find("'model.extra.weight' has no place"), std::string::npos) << err;
}

TEST(HfConvert, RefusesUnknownArchitectureAndShortSlidingWindow) {
  TempDir dir("arch");
  for (const auto& [name, edit, expected] :
       std::vector<std::tuple<std::string, std::string, std::string>>{
           {"llama", R"({"architectures": ["BertForMaskedLM"]})", "architecture \"BertForMaskedLM\" is not supported"},
           {"mistral", R"({"sliding_window": 16})", "sliding_window = 16 is shorter than max_position_embeddings"},
           {"llama", R"({"rope_scaling": {"rope_type": "yarn", "factor": 4.0}})", "rope_scaling"},
           {"llama", R"({"rope_scaling": {"rope_type": "llama3", "factor": 8.0, "high_freq_factor": 2.0}})",
            "original_max_position_embeddings 8192"}}) {
    const fs::path bad = dir.path() / (name + "-edited");
    fs::remove_all(bad);
    fs::create_directories(bad);
    fs::copy_file(fixture(name) / "model.safetensors", bad / "model.safetensors");
    auto cfg = nlohmann::json::parse(read_text(fixture(name) / "config.json"));
    cfg.merge_patch(nlohmann::json::parse(edit));
    std::ofstream(bad / "config.json") << cfg.dump();
    const std::string err = convert_error(bad);
    EXPECT_NE(err.find((bad / "config.json").string()), std::string::npos) << err;
    EXPECT_NE(err.find(expected), std::string::npos) << err;
    EXPECT_NE(err.find("HINT"), std::string::npos) << err;
  }
}

TEST(HfConvert, RefusesATruncatedSafetensorsFile) {
  TempDir dir("trunc");
  const fs::path bad = dir.path() / "gpt2";
  fs::create_directories(bad);
  fs::copy_file(fixture("gpt2") / "config.json", bad / "config.json");
  const std::string bytes = read_text(fixture("gpt2") / "model.safetensors");
  std::ofstream(bad / "model.safetensors", std::ios::binary) << bytes.substr(0, bytes.size() - 100);
  const std::string err = convert_error(bad);
  EXPECT_NE(err.find((bad / "model.safetensors").string()), std::string::npos) << err;
  EXPECT_NE(err.find("data_offsets lie outside the file"), std::string::npos) << err;
}
