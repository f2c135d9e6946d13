// Hugging Face safetensors <-> megahost checkpoints (see megahost/core/convert/hf.h).
#include "megahost/core/files.h"
#include "megahost/core/convert/hf.h"

#include <ATen/ops/empty.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "hf_architectures.h"
#include "megahost/core/convert/safetensors.h"
#include "megahost/core/engine/checkpoint_inspect.h"
#include "megahost/core/engine/checkpoint_reshard.h"
#include "megahost/core/engine/checkpointing.h"
#include "megahost/core/error.h"
#include "megahost/core/instances.h"

namespace megahost::core {

namespace fs = std::filesystem;

namespace {

constexpr const char* kHfConfigBlob = "hf/config.json";  // the source config.json, kept for the way back
constexpr const char* kHfSourceBlob = "hf/source_dir";    // where tokenizer files were
const char* const kTokenizerFiles[] = {"tokenizer.json", "tokenizer.model", "tokenizer_config.json",
                                       "special_tokens_map.json", "generation_config.json"};

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  MH_CORE_CHECK(in.good(), p.string(), ": cannot open\nHINT: check the path");
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void write_text(const fs::path& p, const std::string& text) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << text;
  out.flush();
  MH_CORE_CHECK(out.good(), p.string(), ": cannot write\nHINT: check permissions and free space");
}

// [tokenizer] for the HF folder: tokenizer.json (hf-tokenizer) first, else tokenizer.model.
std::string tokenizer_table(const fs::path& hf_dir) {
  if (fs::exists(hf_dir / "tokenizer.json"))
    return cat("[tokenizer]\nplugin = \"hf-tokenizer\"\ntokenizer_model = \"", (hf_dir / "tokenizer.json").string(),
               "\"\n");
  if (fs::exists(hf_dir / "tokenizer.model"))
    return cat("[tokenizer]\nplugin = \"llama2-sentencepiece\"\ntokenizer_model = \"",
               (hf_dir / "tokenizer.model").string(), "\"\n");
  return cat("# ", hf_dir.string(), " has no tokenizer.json nor tokenizer.model: set [tokenizer] by hand\n");
}

std::string recipe_text(const hf::ModelShape& s, const fs::path& hf_dir, const fs::path& out_dir,
                        int64_t vocab_divisor, int tp, int pp, const std::string& checkpoint_plugin) {
  std::string t = cat("# Converted from ", hf_dir.string(), " by `megahost convert --loader hf --saver megahost`.\n",
                      "# The tokenizer's vocabulary must pad to ", s.padded_vocab, " rows (config.json vocab_size ",
                      s.vocab, " padded to a multiple of ", vocab_divisor, " x ", tp, ").\n\n[model]\n");
  for (const auto& [k, v] : hf::recipe_model_keys(s)) t += cat(k, " = ", v, "\n");
  t += "\n" + tokenizer_table(hf_dir);
  t += cat("\n[parallel]\nmake_vocab_size_divisible_by = ", vocab_divisor, "\n");
  if (tp > 1 || pp > 1)
    t += cat("tensor_model_parallel_size = ", tp, "\npipeline_model_parallel_size = ", pp, "\n");
  t += cat("\n[checkpoint]\nload = \"", out_dir.string(), "\"\nfinetune = true\n");
  if (checkpoint_plugin != "megahost-tensors") t += cat("plugin = \"", checkpoint_plugin, "\"\n");
  return t;
}

void check_shape(const std::string& file, const std::string& name, const std::vector<int64_t>& got,
                 const std::vector<int64_t>& want, const std::string& why) {
  MH_CORE_CHECK(got == want, file, ": tensor '", name, "' has shape ", at::IntArrayRef(got), ", expected ",
                at::IntArrayRef(want), "\nHINT: ", why);
}

// The gpt plugin's tensor-parallel split of a parameter (Megatron's column / row parallel
// linears, vocab-parallel embedding): the dim, and whether it holds GLU halves; -1 = replicated.
std::pair<int32_t, bool> tp_partition(const hf::ModelShape& s, const std::string& name) {
  auto ends = [&](const char* suffix) {
    const std::string x(suffix);
    return name.size() >= x.size() && name.compare(name.size() - x.size(), x.size(), x) == 0;
  };
  const bool swiglu = s.arch != hf::Arch::Gpt2;
  if (ends("mlp.linear_fc1.weight") || ends("mlp.linear_fc1.bias")) return {0, swiglu};
  if (ends("self_attention.linear_qkv.weight") || ends("self_attention.linear_qkv.bias")) return {0, false};
  if (ends("self_attention.linear_proj.weight") || ends("mlp.linear_fc2.weight")) return {1, false};
  if (name == "embedding.word_embeddings.weight" || name == "output_layer.weight") return {0, false};
  return {-1, false};
}

// The pipeline stages holding a parameter (Megatron's even split of the layers; tied word
// embeddings live on the first and the last stage).
std::vector<int> stages_holding(const hf::ModelShape& s, const std::string& name, int pp) {
  const std::string layers = "decoder.layers.";
  if (name.rfind(layers, 0) == 0)
    return {static_cast<int>(std::stoll(name.substr(layers.size())) / (s.num_layers / pp))};
  if (name == "embedding.word_embeddings.weight" && s.tied && pp > 1) return {0, pp - 1};
  if (name.rfind("embedding.", 0) == 0) return {0};
  return {pp - 1};
}

}  // namespace

std::string convert_hf_to_megahost(const PluginRegistry& reg, const std::string& hf_dir_arg,
                                   const std::string& out_dir_arg, const HfConvertOptions& opts) {
  const fs::path hf_dir = fs::absolute(hf_dir_arg).lexically_normal(),
                 out_dir = fs::absolute(out_dir_arg).lexically_normal();
  const fs::path config_file = hf_dir / "config.json";
  MH_CORE_CHECK(fs::exists(config_file), config_file.string(),
                ": missing\nHINT: --load-dir must be a Hugging Face model folder (config.json + model.safetensors)");
  const std::string config_text = read_text(config_file);
  const nlohmann::json config = nlohmann::json::parse(config_text, nullptr, false);
  MH_CORE_CHECK(!config.is_discarded(), config_file.string(), ": not valid JSON\nHINT: the download is damaged");
  const int tp = opts.target_tp, pp = opts.target_pp, world = tp * pp;
  MH_CORE_CHECK(tp >= 1 && pp >= 1, "--target-tensor-parallel-size ", tp, " --target-pipeline-parallel-size ", pp,
                ": must be >= 1\nHINT: 1 writes a single-process checkpoint (any layout loads it)");
  // Megatron pads the vocabulary to a multiple of make_vocab_size_divisible_by x tp.
  hf::ModelShape s = hf::shape_from_hf_config(config, config_file.string(), opts.make_vocab_size_divisible_by * tp);
  MH_CORE_CHECK(s.num_layers % pp == 0, config_file.string(), ": ", s.num_layers, " layers do not split into ", pp,
                " pipeline stages\nHINT: pick a --target-pipeline-parallel-size that divides the layer count");
  MH_CORE_CHECK(s.heads % tp == 0 && s.groups % tp == 0 && s.ffn % tp == 0, config_file.string(), ": ", s.heads,
                " heads, ", s.groups, " key/value groups and ffn ", s.ffn, " do not all split into ", tp,
                " tensor-parallel parts\nHINT: pick a --target-tensor-parallel-size that divides them");

  const SafetensorsFolder st(hf_dir.string());
  if (s.arch == hf::Arch::Gpt2) s.gpt2_prefix = st.has("transformer.wte.weight") ? "transformer." : "";
  const std::vector<hf::Rule> rules = hf::rules_for(s);

  // Check every tensor before writing anything: names, shapes, and nothing left unused.
  std::set<std::string> used;
  for (const auto& r : rules)
    for (size_t i = 0; i < r.hf.size(); ++i) {
      const SafetensorsEntry& e = st.entry(r.hf[i]);
      check_shape(e.file, r.hf[i], e.shape, r.hf_shapes[i], "config.json and the weights disagree");
      used.insert(r.hf[i]);
    }
  for (const auto& [name, e] : st.entries())
    MH_CORE_CHECK(used.count(name) != 0 || hf::ignorable_hf_tensor(s, name), e.file, ": tensor '", name,
                  "' has no place in the megahost model\nHINT: config.json describes another model than the weights "
                  "(or an unsupported variant)");

  fs::create_directories(out_dir);
  auto fmt = create_checkpoint_format(reg, opts.checkpoint_plugin, ConfigSection{});
  const fs::path iter_dir = iteration_dir(out_dir.string(), 0);
  const fs::path staging = iter_dir.string() + ".tmp";
  remove_tree(staging);
  const std::string recipe = recipe_text(s, hf_dir, out_dir, opts.make_vocab_size_divisible_by, tp, pp, fmt->id());
  const std::string layout = cat("tp", tp, ".pp", pp, ".cp1.dp1");
  int64_t num_params = 0;
  {
    // Rank r = tp_rank + tp * pp_rank (Megatron's order with dp = cp = 1), one folder each.
    std::vector<std::unique_ptr<CheckpointFormat::Writer>> writers;
    std::vector<nlohmann::json> shards(world);
    std::vector<int64_t> rank_params(world, 0);
    if (world > 1) fs::create_directories(staging);
    for (int r = 0; r < world; ++r) {
      char name[32];
      std::snprintf(name, sizeof(name), "rank_%05d", r);
      writers.push_back(fmt->open_writer(world > 1 ? (staging / name).string() : staging.string()));
      shards[r] = {{"format", "megahost-shards"}, {"version", 1}, {"tensors", nlohmann::json::object()}};
    }
    for (const auto& r : rules) {  // one rule's tensors in memory at a time
      std::vector<at::Tensor> in;
      for (const auto& n : r.hf) in.push_back(st.read(n));
      const at::Tensor t = hf::to_megahost(s, r, in).contiguous();
      check_shape(hf_dir.string(), r.mh, t.sizes().vec(), r.mh_shape, "internal conversion error");
      num_params += t.numel();
      const auto [dim, glu] = tp_partition(s, r.mh);
      std::vector<int64_t> local = t.sizes().vec();
      if (dim >= 0) local[dim] /= tp;
      for (int stage : stages_holding(s, r.mh, pp))
        for (int tr = 0; tr < tp; ++tr) {
          const int rank = tr + tp * stage;
          const ShardSlice slice = tp_slice(local, dim, glu, tr, tp);
          writers[rank]->tensor("model/" + r.mh, extract_slice(t, slice));
          shards[rank]["tensors"]["model/" + r.mh] = slice_to_json(slice);
          rank_params[rank] += t.numel() / (dim >= 0 ? tp : 1);
        }
    }
    for (int r = 0; r < world; ++r) {
      const nlohmann::json parallel = {{"tp", tp}, {"pp", pp}, {"cp", 1}, {"dp", 1},
                                       {"tp_rank", r % tp}, {"pp_rank", r / tp}, {"cp_rank", 0}, {"dp_rank", 0}};
      const nlohmann::json meta = {{"format", "megahost-checkpoint"}, {"version", 2},
                                   {"checkpoint_plugin", fmt->id()}, {"iteration", 0},
                                   {"consumed_train_samples", 0}, {"num_parameters", rank_params[r]},
                                   {"model_plugin", "gpt"}, {"world_size", world}, {"rank", r},
                                   {"layout", layout}, {"parallel", parallel},
                                   {"converted_from", hf_dir.string()}, {"megahost_version", MEGAHOST_VERSION}};
      writers[r]->blob("meta.json", meta.dump(2));
      writers[r]->blob(kShardsBlob, shards[r].dump(1));
      writers[r]->blob("recipe.toml", recipe);
      writers[r]->blob(kHfConfigBlob, config_text);
      writers[r]->blob(kHfSourceBlob, hf_dir.string());
      writers[r]->commit();
    }
  }
  remove_tree(iter_dir);
  fs::rename(staging, iter_dir);
  write_text(out_dir / "latest_checkpointed_iteration.txt", "0\n");
  write_text(out_dir / "recipe.toml", recipe);
  return cat("converted ", hf_dir.string(), " (", config.value("architectures", nlohmann::json::array()).dump(),
             ", ", num_params, " parameters) to ", iter_dir.string(), " (layout ", layout, ", ", world,
             " rank folder(s)); recipe ", (out_dir / "recipe.toml").string());
}

std::string convert_megahost_to_hf(const PluginRegistry& reg, const std::string& mh_dir,
                                   const std::string& out_dir_arg, const HfConvertOptions& opts) {
  const std::string iter_dir = resolve_checkpoint_dir(mh_dir);
  auto fmt = create_checkpoint_format(reg, opts.checkpoint_plugin, ConfigSection{});
  // Any layout: every tensor is assembled from the rank folders' pieces (shards.json).
  ShardedCheckpoint ck(*fmt, iter_dir);
  MH_CORE_CHECK(ck.layout_free(), ck.why_not_layout_free(),
                "\nHINT: load it in a run of the layout that saved it and save it again to get the layout-free format");
  auto* reader = &ck.reader(0);  // blobs (recipe, the source config.json) of the first rank folder
  std::map<std::string, CheckpointEntry> entries;
  for (auto& e : reader->list()) entries[e.name] = e;
  MH_CORE_CHECK(entries.count("recipe.toml") != 0, iter_dir, ": has no recipe.toml\nHINT: not a megahost checkpoint");
  const std::string recipe_file = iter_dir + "/recipe.toml";
  toml::table recipe;
  try {
    recipe = toml::parse(reader->blob("recipe.toml"), std::string_view(recipe_file));
  } catch (const toml::parse_error& e) {
    throw Error(cat(recipe_file, ": not valid TOML (", e.description(), ")\nHINT: the checkpoint is damaged"));
  }
  const toml::table* model = recipe["model"].as_table();
  MH_CORE_CHECK(model != nullptr && model->get("plugin") != nullptr &&
                    (*model)["plugin"].value_or(std::string()) == "gpt",
                recipe_file, ": [model] plugin is not \"gpt\"\nHINT: only the gpt model plugin converts to Hugging Face");
  const std::string emb = "model/embedding.word_embeddings.weight";
  MH_CORE_CHECK(ck.has(emb) && ck.pieces(emb).front().slice.global_shape.size() == 2, iter_dir, ": no tensor '", emb,
                "'\nHINT: not a gpt checkpoint");
  const int64_t padded_vocab = ck.pieces(emb).front().slice.global_shape[0];

  hf::ModelShape s = hf::shape_from_recipe(*model, recipe_file, padded_vocab);
  nlohmann::json config = hf::hf_config_for(s);
  if (entries.count(kHfConfigBlob) != 0) {  // came from HF: give back its own config.json
    const std::string text = reader->blob(kHfConfigBlob);
    config = nlohmann::json::parse(text, nullptr, false);
    MH_CORE_CHECK(config.is_object(), iter_dir, ": entry '", kHfConfigBlob, "' is not JSON\nHINT: damaged checkpoint");
    hf::ModelShape from_hf = hf::shape_from_hf_config(config, cat(iter_dir, ": ", kHfConfigBlob), 1);
    from_hf.padded_vocab = padded_vocab;
    from_hf.gpt2_prefix = "transformer.";
    MH_CORE_CHECK(from_hf.vocab <= padded_vocab && from_hf.num_layers == s.num_layers && from_hf.hidden == s.hidden,
                  iter_dir, ": the stored config.json does not match recipe.toml\nHINT: damaged checkpoint");
    s = from_hf;
  }
  const std::vector<hf::Rule> rules = hf::rules_for(s);

  std::vector<SafetensorsWriter::Spec> specs;
  for (const auto& r : rules) {
    const std::string name = "model/" + r.mh;
    MH_CORE_CHECK(ck.has(name), iter_dir, ": checkpoint has no tensor '", name,
                  "'\nHINT: recipe.toml and the stored tensors disagree");
    check_shape(iter_dir, name, ck.pieces(name).front().slice.global_shape, r.mh_shape,
                "recipe.toml and the stored tensors disagree");
    for (size_t i = 0; i < r.hf.size(); ++i) specs.push_back({r.hf[i], s.hf_dtype, r.hf_shapes[i]});
  }

  const fs::path out_dir = fs::absolute(out_dir_arg).lexically_normal();
  fs::create_directories(out_dir);
  SafetensorsWriter out((out_dir / "model.safetensors").string(), specs, {{"format", "pt"}});
  for (const auto& r : rules) {  // one rule's tensors in memory at a time
    const at::Tensor t = ck.read_global("model/" + r.mh);
    const auto hf_tensors = hf::to_hf(s, r, t);
    for (size_t i = 0; i < r.hf.size(); ++i) out.write(r.hf[i], hf_tensors[i]);
  }
  out.close();
  write_text(out_dir / "config.json", config.dump(2) + "\n");

  // Tokenizer files: from the HF folder the checkpoint came from, or the recipe's tokenizer folder.
  std::vector<fs::path> sources;
  if (entries.count(kHfSourceBlob) != 0) sources.emplace_back(reader->blob(kHfSourceBlob));
  if (auto tok = recipe["tokenizer"]["tokenizer_model"].value<std::string>()) sources.push_back(fs::path(*tok).parent_path());
  int copied = 0;
  for (const auto& dir : sources) {
    for (const char* f : kTokenizerFiles)
      if (fs::exists(dir / f) && !fs::exists(out_dir / f)) {
        fs::copy_file(dir / f, out_dir / f);
        ++copied;
      }
    if (copied > 0) break;
  }
  return cat("converted ", iter_dir, " to ", (out_dir / "model.safetensors").string(), " (",
             config["architectures"].dump(), ", ", specs.size(), " tensors, ", copied, " tokenizer file(s))");
}

}  // namespace megahost::core
