// The streaming driver of `megahost convert` with a converter plugin (see megahost/core/convert/hf.h):
// foreign folder <-> megahost checkpoint for the gpt model plugin, one rule's tensors in memory at
// a time. The converter names and stores; the core applies the steps, slices into TP x PP rank
// folders and writes recipe.toml.
#include "megahost/core/files.h"
#include "megahost/core/convert/hf.h"

#include <filesystem>
#include <fstream>
#include <map>

#include "megahost/core/convert/converter.h"
#include "megahost/core/engine/checkpoint_inspect.h"
#include "megahost/core/engine/checkpoint_reshard.h"
#include "megahost/core/engine/checkpointing.h"
#include "megahost/core/error.h"
#include "megahost/core/instances.h"

namespace megahost::core {

namespace fs = std::filesystem;

namespace {

void write_text(const fs::path& p, const std::string& text) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << text;
  out.flush();
  MH_CORE_CHECK(out.good(), p.string(), ": cannot write\nHINT: check permissions and free space");
}

void check_shape(const std::string& file, const std::string& name, const std::vector<int64_t>& got,
                 const std::vector<int64_t>& want, const std::string& why) {
  MH_CORE_CHECK(got == want, file, ": tensor '", name, "' has shape ", at::IntArrayRef(got), ", expected ",
                at::IntArrayRef(want), "\nHINT: ", why);
}

// What the driver needs of the gpt plugin's [model] table: the layer split, the tied embedding,
// the GLU halves of fc1, and the grouped-QKV geometry of the steps.
struct GptLayout {
  int64_t num_layers = 0, hidden = 0, ffn = 0;
  bool tied = true, swiglu = false;
  QkvGeometry qkv;
};

GptLayout gpt_layout(const toml::table& m, const std::string& file) {
  GptLayout l;
  const auto need = [&](const char* key) {
    auto v = m[key].value<int64_t>();
    MH_CORE_CHECK(v.has_value() && *v > 0, file, ": [model] has no positive integer '", key,
                  "'\nHINT: the converter's recipe must describe the gpt model");
    return *v;
  };
  MH_CORE_CHECK(m["plugin"].value_or(std::string()) == "gpt", file,
                ": [model] plugin is not \"gpt\"\nHINT: converters map the gpt model plugin's parameters");
  l.num_layers = need("num_layers");
  l.hidden = need("hidden_size");
  l.qkv.heads = need("num_attention_heads");
  l.swiglu = m["swiglu"].value_or(false);
  l.qkv.groups = m["group_query_attention"].value_or(false) ? m["num_query_groups"].value_or(int64_t{1}) : l.qkv.heads;
  l.qkv.head_dim = m["kv_channels"].value_or(l.hidden / l.qkv.heads);
  l.ffn = m["ffn_hidden_size"].value_or(l.swiglu ? (8 * l.hidden / 3) / 64 * 64 : 4 * l.hidden);
  l.tied = !m["untie_embeddings_and_output_weights"].value_or(false);
  return l;
}

toml::table parse_toml(const std::string& text, const std::string& file) {
  try {
    return toml::parse(text, std::string_view(file));
  } catch (const toml::parse_error& e) {
    throw Error(cat(file, ": not valid TOML (", e.description(), ")\nHINT: the checkpoint is damaged"));
  }
}

// The gpt plugin's tensor-parallel split of a parameter (Megatron's column / row parallel
// linears, vocab-parallel embedding): the dim, and whether it holds GLU halves; -1 = replicated.
std::pair<int32_t, bool> tp_partition(const GptLayout& l, const std::string& name) {
  auto ends = [&](const char* suffix) {
    const std::string x(suffix);
    return name.size() >= x.size() && name.compare(name.size() - x.size(), x.size(), x) == 0;
  };
  if (ends("mlp.linear_fc1.weight") || ends("mlp.linear_fc1.bias")) return {0, l.swiglu};
  if (ends("self_attention.linear_qkv.weight") || ends("self_attention.linear_qkv.bias")) return {0, false};
  if (ends("self_attention.linear_proj.weight") || ends("mlp.linear_fc2.weight")) return {1, false};
  if (name == "embedding.word_embeddings.weight" || name == "output_layer.weight") return {0, false};
  return {-1, false};
}

// The pipeline stages holding a parameter (Megatron's even split of the layers; tied word
// embeddings live on the first and the last stage).
std::vector<int> stages_holding(const GptLayout& l, const std::string& name, int pp) {
  const std::string layers = "decoder.layers.";
  if (name.rfind(layers, 0) == 0)
    return {static_cast<int>(std::stoll(name.substr(layers.size())) / (l.num_layers / pp))};
  if (name == "embedding.word_embeddings.weight" && l.tied && pp > 1) return {0, pp - 1};
  if (name.rfind("embedding.", 0) == 0) return {0};
  return {pp - 1};
}

}  // namespace

std::string convert_foreign_to_megahost(const PluginRegistry& reg, const std::string& converter_id,
                                        const std::string& dir_arg, const std::string& out_dir_arg,
                                        const HfConvertOptions& opts) {
  const fs::path src_dir = fs::absolute(dir_arg).lexically_normal(),
                 out_dir = fs::absolute(out_dir_arg).lexically_normal();
  const int tp = opts.target_tp, pp = opts.target_pp, world = tp * pp;
  MH_CORE_CHECK(tp >= 1 && pp >= 1, "--target-tensor-parallel-size ", tp, " --target-pipeline-parallel-size ", pp,
                ": must be >= 1\nHINT: 1 writes a single-process checkpoint (any layout loads it)");
  auto conv = create_converter(reg, converter_id);
  // Megatron pads the vocabulary to a multiple of make_vocab_size_divisible_by x tp.
  auto reader = conv->open_reader(src_dir.string(), opts.make_vocab_size_divisible_by * tp);
  const std::string tables = reader->recipe_toml();
  const std::string where = cat(src_dir.string(), " (as converter '", conv->id(), "' reads it)");
  const toml::table parsed = parse_toml(tables, where);
  MH_CORE_CHECK(parsed["model"].as_table() != nullptr, where, ": the converter gave no [model] table",
                "\nHINT: a bug in the converter plugin");
  const GptLayout l = gpt_layout(*parsed["model"].as_table(), where);
  MH_CORE_CHECK(l.num_layers % pp == 0, where, ": ", l.num_layers, " layers do not split into ", pp,
                " pipeline stages\nHINT: pick a --target-pipeline-parallel-size that divides the layer count");
  MH_CORE_CHECK(l.qkv.heads % tp == 0 && l.qkv.groups % tp == 0 && l.ffn % tp == 0, where, ": ", l.qkv.heads,
                " heads, ", l.qkv.groups, " key/value groups and ffn ", l.ffn, " do not all split into ", tp,
                " tensor-parallel parts\nHINT: pick a --target-tensor-parallel-size that divides them");
  const std::vector<ConvertRule> rules = reader->plan();
  const auto blobs = reader->blobs();
  int64_t vocab = 0, padded_vocab = 0;
  for (const auto& r : rules)
    if (r.param == "embedding.word_embeddings.weight" && !r.foreign.empty()) {
      vocab = r.foreign[0].shape.at(0);
      padded_vocab = r.shape.at(0);
    }

  fs::create_directories(out_dir);
  auto fmt = create_checkpoint_format(reg, opts.checkpoint_plugin, ConfigSection{});
  const fs::path iter_dir = iteration_dir(out_dir.string(), 0);
  const fs::path staging = iter_dir.string() + ".tmp";
  remove_tree(staging);
  std::string recipe = cat("# Converted from ", src_dir.string(), " by `megahost convert --loader ", conv->id(),
                           " --saver megahost`.\n", "# The tokenizer's vocabulary must pad to ", padded_vocab,
                           " rows (the source's ", vocab, " padded to a multiple of ",
                           opts.make_vocab_size_divisible_by, " x ", tp, ").\n\n", tables);
  recipe += cat("\n[parallel]\nmake_vocab_size_divisible_by = ", opts.make_vocab_size_divisible_by, "\n");
  if (tp > 1 || pp > 1) recipe += cat("tensor_model_parallel_size = ", tp, "\npipeline_model_parallel_size = ", pp, "\n");
  recipe += cat("\n[checkpoint]\nload = \"", out_dir.string(), "\"\nfinetune = true\n");
  if (fmt->id() != "megahost-tensors") recipe += cat("plugin = \"", fmt->id(), "\"\n");
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
      for (const auto& f : r.foreign) in.push_back(reader->tensor(f));
      const at::Tensor t = to_megahost(l.qkv, r, in).contiguous();
      check_shape(src_dir.string(), r.param, t.sizes().vec(), r.shape, "the converter's rule and its step disagree");
      num_params += t.numel();
      const auto [dim, glu] = tp_partition(l, r.param);
      std::vector<int64_t> local = t.sizes().vec();
      if (dim >= 0) local[dim] /= tp;
      for (int stage : stages_holding(l, r.param, pp))
        for (int tr = 0; tr < tp; ++tr) {
          const int rank = tr + tp * stage;
          const ShardSlice slice = tp_slice(local, dim, glu, tr, tp);
          writers[rank]->tensor("model/" + r.param, extract_slice(t, slice));
          shards[rank]["tensors"]["model/" + r.param] = slice_to_json(slice);
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
                                   {"converted_from", src_dir.string()}, {"converter", conv->id()},
                                   {"megahost_version", MEGAHOST_VERSION}};
      writers[r]->blob("meta.json", meta.dump(2));
      writers[r]->blob(kShardsBlob, shards[r].dump(1));
      writers[r]->blob("recipe.toml", recipe);
      for (const auto& [name, bytes] : blobs) writers[r]->blob(conv->id() + "/" + name, bytes);  // for the way back
      writers[r]->commit();
    }
  }
  remove_tree(iter_dir);
  fs::rename(staging, iter_dir);
  write_text(out_dir / "latest_checkpointed_iteration.txt", "0\n");
  write_text(out_dir / "recipe.toml", recipe);
  return cat("converted ", src_dir.string(), " (", reader->summary(), ", ", num_params, " parameters) to ",
             iter_dir.string(), " (layout ", layout, ", ", world, " rank folder(s)); recipe ",
             (out_dir / "recipe.toml").string());
}

std::string convert_megahost_to_foreign(const PluginRegistry& reg, const std::string& converter_id,
                                        const std::string& mh_dir, const std::string& out_dir_arg,
                                        const HfConvertOptions& opts) {
  const std::string iter_dir = resolve_checkpoint_dir(mh_dir);
  auto conv = create_converter(reg, converter_id);
  auto fmt = create_checkpoint_format(reg, opts.checkpoint_plugin, ConfigSection{});
  // Any layout: every tensor is assembled from the rank folders' pieces (shards.json).
  ShardedCheckpoint ck(*fmt, iter_dir);
  MH_CORE_CHECK(ck.layout_free(), ck.why_not_layout_free(),
                "\nHINT: load it in a run of the layout that saved it and save it again to get the layout-free format");
  auto* reader = &ck.reader(0);  // blobs (recipe, the converter's metadata) of the first rank folder
  std::map<std::string, CheckpointEntry> entries;
  for (auto& e : reader->list()) entries[e.name] = e;
  MH_CORE_CHECK(entries.count("recipe.toml") != 0, iter_dir, ": has no recipe.toml\nHINT: not a megahost checkpoint");
  const std::string recipe_file = iter_dir + "/recipe.toml";
  const toml::table recipe = parse_toml(reader->blob("recipe.toml"), recipe_file);
  const toml::table* model = recipe["model"].as_table();
  MH_CORE_CHECK(model != nullptr && (*model)["plugin"].value_or(std::string()) == "gpt", recipe_file,
                ": [model] plugin is not \"gpt\"\nHINT: only the gpt model plugin converts to Hugging Face and other "
                "converter formats");
  const GptLayout l = gpt_layout(*model, recipe_file);
  const std::string emb = "model/embedding.word_embeddings.weight";
  MH_CORE_CHECK(ck.has(emb) && ck.pieces(emb).front().slice.global_shape.size() == 2, iter_dir, ": no tensor '", emb,
                "'\nHINT: not a gpt checkpoint");
  const int64_t padded_vocab = ck.pieces(emb).front().slice.global_shape[0];
  std::vector<std::pair<std::string, std::string>> blobs;  // this converter's, stored by its loader
  const std::string prefix = conv->id() + "/";
  for (const auto& [name, e] : entries)
    if (e.is_blob && name.rfind(prefix, 0) == 0) blobs.emplace_back(name.substr(prefix.size()), reader->blob(name));
  ConfigSection model_section;
  model_section.table = std::make_shared<toml::table>(*model);
  model_section.file = recipe_file;
  model_section.name = "model";
  const std::string tokenizer_model = recipe["tokenizer"]["tokenizer_model"].value_or(std::string());

  const fs::path out_dir = fs::absolute(out_dir_arg).lexically_normal();
  auto writer = conv->open_writer(out_dir.string(), model_section, tokenizer_model, padded_vocab, blobs);
  const std::vector<ConvertRule> rules = writer->plan();
  for (const auto& r : rules) {  // every tensor checked before anything is written
    const std::string name = "model/" + r.param;
    MH_CORE_CHECK(ck.has(name), iter_dir, ": checkpoint has no tensor '", name,
                  "'\nHINT: recipe.toml and the stored tensors disagree");
    check_shape(iter_dir, name, ck.pieces(name).front().slice.global_shape, r.shape,
                "recipe.toml and the stored tensors disagree");
  }
  for (const auto& r : rules) {  // one rule's tensors in memory at a time
    const auto foreign = to_foreign(l.qkv, r, ck.read_global("model/" + r.param));
    for (size_t i = 0; i < r.foreign.size(); ++i) writer->tensor(r.foreign[i].name, foreign[i]);
  }
  return cat("converted ", iter_dir, " to ", writer->commit());
}

std::string convert_hf_to_megahost(const PluginRegistry& reg, const std::string& hf_dir, const std::string& out_dir,
                                   const HfConvertOptions& opts) {
  return convert_foreign_to_megahost(reg, "hf", hf_dir, out_dir, opts);
}

std::string convert_megahost_to_hf(const PluginRegistry& reg, const std::string& mh_dir, const std::string& out_dir,
                                   const HfConvertOptions& opts) {
  return convert_megahost_to_foreign(reg, "hf", mh_dir, out_dir, opts);
}

}  // namespace megahost::core
