// hf — converter plugin: Hugging Face folders (config.json + model.safetensors[.index.json] +
// tokenizer files) <-> the gpt model plugin's parameters. GPT2LMHeadModel, LlamaForCausalLM
// (Llama 1/2/3), MistralForCausalLM, Qwen2ForCausalLM (Qwen 2 / 2.5), Qwen3ForCausalLM (dense).
// The core streams one rule at a time and applies the steps.
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <set>

#include "hf_model.h"
#include "megahost/sdk/converter.h"
#include "megahost/sdk/safetensors.h"

namespace megahost::hf {

namespace fs = std::filesystem;
using sdk::StEntry;
using sdk::StFolder;
using sdk::StWriter;

namespace {

const char* const kTokenizerFiles[] = {"tokenizer.json", "tokenizer.model", "tokenizer_config.json",
                                       "special_tokens_map.json", "generation_config.json"};

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  MH_CHECK(in.good(), MH_ERR_NOT_FOUND, p.string(), ": cannot open\nHINT: check the path");
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void write_text(const fs::path& p, const std::string& text) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << text;
  out.flush();
  MH_CHECK(out.good(), MH_ERR_UNAVAILABLE, p.string(), ": cannot write\nHINT: check permissions and free space");
}

// [tokenizer] for the HF folder: tokenizer.json (hf-tokenizer) first, else tokenizer.model.
std::string tokenizer_table(const fs::path& hf_dir) {
  if (fs::exists(hf_dir / "tokenizer.json"))
    return sdk::str_cat("[tokenizer]\nplugin = \"hf-tokenizer\"\ntokenizer_model = \"",
                        (hf_dir / "tokenizer.json").string(), "\"\n");
  if (fs::exists(hf_dir / "tokenizer.model"))
    return sdk::str_cat("[tokenizer]\nplugin = \"llama2-sentencepiece\"\ntokenizer_model = \"",
                        (hf_dir / "tokenizer.model").string(), "\"\n");
  return sdk::str_cat("# ", hf_dir.string(), " has no tokenizer.json nor tokenizer.model: set [tokenizer] by hand\n");
}

}  // namespace

// HF folder -> megahost: config.json gives the shape, the safetensors headers are checked against
// the rules before anything is converted.
class Reader {
 public:
  Reader(const mh_host*, const mh_converter_reader_args& args) : dir_(args.dir) {
    const fs::path config_file = dir_ / "config.json";
    MH_CHECK(fs::exists(config_file), MH_ERR_NOT_FOUND, config_file.string(),
             ": missing\nHINT: --load-dir must be a Hugging Face model folder (config.json + model.safetensors)");
    config_text_ = read_text(config_file);
    const nlohmann::json config = nlohmann::json::parse(config_text_, nullptr, false);
    MH_CHECK(!config.is_discarded(), MH_ERR_DATA_LOSS, config_file.string(),
             ": not valid JSON\nHINT: the download is damaged");
    MH_CHECK(args.vocab_divisor > 0, MH_ERR_INVALID_ARG, "vocab_divisor must be > 0");
    shape_ = shape_from_hf_config(config, config_file.string(), args.vocab_divisor);
    architectures_ = config.value("architectures", nlohmann::json::array()).dump();
    st_.emplace(dir_.string());
    if (shape_.arch == Arch::Gpt2) shape_.gpt2_prefix = st_->has("transformer.wte.weight") ? "transformer." : "";
    rules_ = rules_for(shape_);
    // Every tensor checked before anything is written: names, shapes, and nothing left unused.
    std::set<std::string> used;
    for (auto& r : rules_)
      for (auto& f : r.foreign) {
        const StEntry& e = st_->entry(f.name);
        MH_CHECK(e.shape == f.shape, MH_ERR_INVALID_ARG, e.file, ": tensor '", f.name, "' has shape ",
                 sdk::shape_text(e.shape), ", expected ", sdk::shape_text(f.shape),
                 "\nHINT: config.json and the weights disagree");
        f.dtype = e.dtype;  // read as stored; the core widens to float32
        used.insert(f.name);
      }
    for (const auto& [name, e] : st_->entries())
      MH_CHECK(used.count(name) != 0 || ignorable_hf_tensor(shape_, name), MH_ERR_INVALID_ARG, e.file, ": tensor '",
               name, "' has no place in the megahost model\nHINT: config.json describes another model than the "
               "weights (or an unsupported variant)");
  }

  std::string recipe_toml() const {
    std::string t = "[model]\n";
    for (const auto& [k, v] : recipe_model_keys(shape_)) t += sdk::str_cat(k, " = ", v, "\n");
    return t + "\n" + tokenizer_table(dir_);
  }
  std::string summary() const { return architectures_; }
  std::vector<sdk::ConvertRule> plan() const { return rules_; }
  void tensor(const char* name, DLTensor* dst) const { st_->read(name, dst); }
  std::vector<std::pair<std::string, std::string>> blobs() const {
    return {{"config.json", config_text_}, {"source_dir", dir_.string()}};  // for the way back
  }

 private:
  fs::path dir_;
  std::string config_text_, architectures_;
  ModelShape shape_;
  std::optional<StFolder> st_;
  std::vector<sdk::ConvertRule> rules_;
};

// megahost -> HF folder: the shape from the stored config.json when the checkpoint came from HF,
// else from the recipe's [model] table.
class Writer {
 public:
  Writer(const mh_host* host, const mh_converter_writer_args& args) : out_dir_(args.dir) {
    const sdk::Config model(host, args.model);
    const std::string recipe = "the checkpoint's recipe.toml";
    shape_ = shape_from_recipe(model, recipe, args.padded_vocab);
    config_ = hf_config_for(shape_);
    for (uint32_t i = 0; i < args.num_blobs; ++i) {
      const mh_converter_blob& b = args.blobs[i];
      const std::string bytes(static_cast<const char*>(b.bytes), b.len);
      if (std::string(b.name) == "source_dir") tokenizer_dirs_.emplace_back(bytes);
      if (std::string(b.name) != "config.json") continue;
      const std::string where = "hf/config.json (stored in the checkpoint)";
      config_ = nlohmann::json::parse(bytes, nullptr, false);
      MH_CHECK(config_.is_object(), MH_ERR_DATA_LOSS, where, ": not JSON\nHINT: damaged checkpoint");
      ModelShape from_hf = shape_from_hf_config(config_, where, 1);  // came from HF: give back its own config
      from_hf.padded_vocab = args.padded_vocab;
      from_hf.gpt2_prefix = "transformer.";
      MH_CHECK(from_hf.vocab <= args.padded_vocab && from_hf.num_layers == shape_.num_layers &&
                   from_hf.hidden == shape_.hidden,
               MH_ERR_DATA_LOSS, where, ": does not match recipe.toml\nHINT: damaged checkpoint");
      shape_ = from_hf;
    }
    if (args.tokenizer_model != nullptr && *args.tokenizer_model != '\0')
      tokenizer_dirs_.push_back(fs::path(args.tokenizer_model).parent_path());
    rules_ = rules_for(shape_);
  }

  std::vector<sdk::ConvertRule> plan() const { return rules_; }

  void tensor(const char* name, const DLTensor* t) {
    if (!file_) {  // the first tensor: the folder and the header (every spec is known)
      std::vector<StWriter::Spec> specs;
      for (const auto& r : rules_)
        for (const auto& f : r.foreign) specs.push_back({f.name, f.dtype, f.shape});
      num_tensors_ = specs.size();
      fs::create_directories(out_dir_);
      file_ = std::make_unique<StWriter>((out_dir_ / "model.safetensors").string(), std::move(specs),
                                         std::map<std::string, std::string>{{"format", "pt"}});
    }
    file_->write(name, t);
  }

  std::string commit() {
    MH_CHECK(file_ != nullptr, MH_ERR_INVALID_ARG, out_dir_.string(),
             ": no tensor was written\nHINT: internal: write the plan's tensors before commit");
    file_->close();
    write_text(out_dir_ / "config.json", config_.dump(2) + "\n");
    // Tokenizer files: from the HF folder the checkpoint came from, or the recipe's tokenizer folder.
    int copied = 0;
    for (const auto& dir : tokenizer_dirs_) {
      for (const char* f : kTokenizerFiles)
        if (fs::exists(dir / f) && !fs::exists(out_dir_ / f)) {
          fs::copy_file(dir / f, out_dir_ / f);
          ++copied;
        }
      if (copied > 0) break;
    }
    return sdk::str_cat((out_dir_ / "model.safetensors").string(), " (", config_["architectures"].dump(), ", ",
                        num_tensors_, " tensors, ", copied, " tokenizer file(s))");
  }

  void abort() noexcept { file_.reset(); }  // removes the unfinished model.safetensors

 private:
  fs::path out_dir_;
  ModelShape shape_;
  nlohmann::json config_;
  std::vector<fs::path> tokenizer_dirs_;
  std::vector<sdk::ConvertRule> rules_;
  std::unique_ptr<StWriter> file_;
  size_t num_tensors_ = 0;
};

}  // namespace megahost::hf

namespace {

const char* const kAliases[] = {"huggingface", "llama_mistral", nullptr};  // Megatron's loader names
const mh_plugin_descriptor kDescriptor = {
    sizeof(mh_plugin_descriptor),
    "hf",
    "Hugging Face safetensors",
    "megahost",
    "0.1.0",
    "Hugging Face folders (config.json + safetensors): GPT-2, Llama 1/2/3, Mistral, Qwen2, Qwen3 <-> the gpt "
    "model plugin",
    kAliases,
    nullptr,
};

}  // namespace

MH_SDK_CONVERTER_PLUGIN(kDescriptor, megahost::hf::Reader, megahost::hf::Writer)
