// A third party's converter, for tests: built from abi/ + sdk/ only, loaded from its own folder.
// Its "toy" format is a folder with toy.json (the model's keys, the tensor list) and one raw
// little-endian float32 file per tensor, named "toy:<megahost name>"; fc1 is stored as two
// tensors (#gate, #up) so the core's GATE_UP step runs. Llama-style gpt models only.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "megahost/sdk/converter.h"

namespace toy {

namespace fs = std::filesystem;
using megahost::sdk::ConvertRule;
using megahost::sdk::str_cat;

constexpr DLDataType kF32{kDLFloat, 32, 1};

// The [model] keys the toy keeps, with their kind: i(nt), f(loat), b(ool), s(tring).
const std::pair<const char*, char> kKeys[] = {
    {"plugin", 's'}, {"num_layers", 'i'}, {"hidden_size", 'i'}, {"num_attention_heads", 'i'},
    {"ffn_hidden_size", 'i'}, {"kv_channels", 'i'}, {"seq_length", 'i'}, {"max_position_embeddings", 'i'},
    {"norm_epsilon", 'f'}, {"rotary_base", 'f'}, {"position_embedding_type", 's'}, {"normalization", 's'},
    {"swiglu", 'b'}, {"add_bias_linear", 'b'}, {"group_query_attention", 'b'}, {"num_query_groups", 'i'},
    {"untie_embeddings_and_output_weights", 'b'}};

std::vector<ConvertRule> rules_for(const nlohmann::json& m, int64_t padded_vocab) {
  const int64_t h = m["hidden_size"], heads = m["num_attention_heads"], layers = m["num_layers"];
  const int64_t kv = m.value("kv_channels", h / heads), ffn = m["ffn_hidden_size"];
  const int64_t groups = m.value("group_query_attention", false) ? m.value("num_query_groups", int64_t{1}) : heads;
  std::vector<ConvertRule> r;
  auto copy = [&](const std::string& name, std::vector<int64_t> shape) {
    r.push_back({name, MH_CONVERT_STEP_COPY, shape, {{"toy:" + name, kF32, shape}}});
  };
  copy("embedding.word_embeddings.weight", {padded_vocab, h});
  for (int64_t i = 0; i < layers; ++i) {
    const std::string p = "decoder.layers." + std::to_string(i) + ".";
    copy(p + "input_layernorm.weight", {h});
    copy(p + "self_attention.linear_qkv.weight", {(heads + 2 * groups) * kv, h});
    copy(p + "self_attention.linear_proj.weight", {h, heads * kv});
    copy(p + "pre_mlp_layernorm.weight", {h});
    const std::string fc1 = p + "mlp.linear_fc1.weight";
    r.push_back({fc1, MH_CONVERT_STEP_GATE_UP, {2 * ffn, h},
                 {{"toy:" + fc1 + "#gate", kF32, {ffn, h}}, {"toy:" + fc1 + "#up", kF32, {ffn, h}}}});
    copy(p + "mlp.linear_fc2.weight", {h, ffn});
  }
  copy("decoder.final_layernorm.weight", {h});
  if (m.value("untie_embeddings_and_output_weights", false)) copy("output_layer.weight", {padded_vocab, h});
  return r;
}

std::string file_of(const std::string& tensor) {  // a file name without ':' or '#'
  std::string f = tensor;
  for (char& c : f)
    if (c == ':' || c == '#') c = '_';
  return f + ".bin";
}

nlohmann::json read_index(const fs::path& dir) {
  std::ifstream in(dir / "toy.json");
  MH_CHECK(in.good(), MH_ERR_NOT_FOUND, (dir / "toy.json").string(),
           ": missing\nHINT: --load-dir must be a toy folder (written by --saver toy)");
  const nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
  MH_CHECK(j.is_object() && j.contains("model") && j.contains("padded_vocab"), MH_ERR_DATA_LOSS,
           (dir / "toy.json").string(), ": not a toy index\nHINT: the folder is damaged");
  return j;
}

class Reader {
 public:
  Reader(const mh_host*, const mh_converter_reader_args& args)
      : dir_(args.dir), index_(read_index(dir_)), rules_(rules_for(index_["model"], index_["padded_vocab"])) {}
  std::string recipe_toml() const {
    std::string t = "[model]\n";
    for (const auto& [key, v] : index_["model"].items()) {
      if (v.is_number_float()) {
        char buf[40];
        std::snprintf(buf, sizeof(buf), "%.17g", v.get<double>());
        std::string s = buf;
        t += str_cat(key, " = ", s.find_first_of(".eE") == std::string::npos ? s + ".0" : s, "\n");
      } else {
        t += str_cat(key, " = ", v.dump(), "\n");  // JSON ints, bools and strings read as TOML
      }
    }
    return t;
  }
  std::string summary() const { return "toy"; }
  std::vector<ConvertRule> plan() const { return rules_; }
  void tensor(const char* name, DLTensor* dst) const {
    const fs::path f = dir_ / file_of(name);
    std::ifstream in(f, std::ios::binary);
    MH_CHECK(in.good(), MH_ERR_NOT_FOUND, f.string(), ": missing tensor '", name, "'\nHINT: the toy folder is incomplete");
    const std::vector<int64_t> shape(dst->shape, dst->shape + dst->ndim);
    const auto n = static_cast<std::streamsize>(megahost::sdk::dense_nbytes(dst->dtype, shape));
    in.read(static_cast<char*>(dst->data), n);
    MH_CHECK(in.gcount() == n, MH_ERR_DATA_LOSS, f.string(), ": short\nHINT: the toy folder is damaged");
  }
  std::vector<std::pair<std::string, std::string>> blobs() const { return {{"index", index_.dump()}}; }

 private:
  fs::path dir_;
  nlohmann::json index_;
  std::vector<ConvertRule> rules_;
};

class Writer {
 public:
  Writer(const mh_host* host, const mh_converter_writer_args& args) : dir_(args.dir) {
    const megahost::sdk::Config m(host, args.model);
    MH_CHECK(m.get_bool("swiglu", false) && m.get_string("normalization", "") == "RMSNorm", MH_ERR_UNSUPPORTED,
             "toy: only Llama-style models (swiglu, RMSNorm)\nHINT: convert a Llama checkpoint");
    for (const auto& [key, kind] : kKeys) {
      if (!m.has(key)) continue;
      if (kind == 'i') model_[key] = m.get_int(key);
      if (kind == 'f') model_[key] = m.get_float(key);
      if (kind == 'b') model_[key] = m.get_bool(key);
      if (kind == 's') model_[key] = m.get_string(key);
    }
    padded_vocab_ = args.padded_vocab;
    rules_ = rules_for(model_, padded_vocab_);
  }
  std::vector<ConvertRule> plan() const { return rules_; }
  void tensor(const char* name, const DLTensor* t) {
    fs::create_directories(dir_);
    const std::vector<int64_t> shape(t->shape, t->shape + t->ndim);
    std::ofstream out(dir_ / file_of(name), std::ios::binary | std::ios::trunc);
    out.write(static_cast<const char*>(t->data), static_cast<std::streamsize>(megahost::sdk::dense_nbytes(t->dtype, shape)));
    MH_CHECK(out.good(), MH_ERR_UNAVAILABLE, (dir_ / file_of(name)).string(), ": cannot write\nHINT: free space?");
    ++written_;
  }
  std::string commit() {
    std::ofstream(dir_ / "toy.json") << nlohmann::json{{"model", model_}, {"padded_vocab", padded_vocab_}}.dump(1);
    return str_cat(dir_.string(), " (toy, ", written_, " tensors)");
  }
  void abort() noexcept {}

 private:
  fs::path dir_;
  nlohmann::json model_ = nlohmann::json::object();
  int64_t padded_vocab_ = 0;
  std::vector<ConvertRule> rules_;
  int written_ = 0;
};

}  // namespace toy

namespace {

const char* const kAliases[] = {"toy", nullptr};
const mh_plugin_descriptor kDescriptor = {sizeof(mh_plugin_descriptor), "com.example.toy", "Toy converter",
                                          "example.com", "0.0.1", "raw float32 files + toy.json (tests)",
                                          kAliases, nullptr};

}  // namespace

MH_SDK_CONVERTER_PLUGIN(kDescriptor, toy::Reader, toy::Writer)
