#include "hf_tokenizer.h"

#include <nlohmann/json.hpp>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "nfc.h"
#include "unicode_classes.h"

namespace megahost::hf {
namespace {

using nlohmann::json;

constexpr const char* kFileHint =
    "tokenizer_model must be a Hugging Face tokenizer.json (Megatron's --tokenizer-model), or the folder that "
    "holds it, as saved by tokenizers / transformers (save_pretrained)";
constexpr const char* kFamiliesHint =
    "hf-tokenizer implements BPE tokenizers of the Llama-3 / Qwen2 / GPT-2 / GPT-NeoX families (normalizer NFC, "
    "pre_tokenizer Split with their regex + ByteLevel) and the Llama-2 family (normalizer Prepend + Replace, BPE "
    "with byte_fallback); "
    "for other tokenizers use a plugin for them (`megahost plugins` lists them)";

bool is_dir(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}
bool is_file(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::string read_all(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f)
    throw LoadError(MH_ERR_NOT_FOUND, sdk::str_cat("hf-tokenizer: cannot open '", path, "': ", std::strerror(errno)),
                    kFileHint);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

json parse_json(const std::string& text, const std::string& path) {
  try {
    return json::parse(text);
  } catch (const json::parse_error& e) {
    const size_t at = std::min<size_t>(e.byte, text.size());
    const auto line = 1 + std::count(text.begin(), text.begin() + static_cast<std::ptrdiff_t>(at), '\n');
    throw LoadError(sdk::str_cat("hf-tokenizer: '", path, "' is not valid JSON (line ", line, "): ", e.what()),
                    kFileHint);
  }
}

std::string type_of(const json& j) {
  auto it = j.find("type");
  return (it != j.end() && it->is_string()) ? it->get<std::string>() : std::string("(no type)");
}

LoadError unsupported(const std::string& component, const json& j) {
  return LoadError(sdk::str_cat("the ", component, " '", type_of(j), "' is not implemented (", j.dump().substr(0, 300),
                                ")"),
                   kFamiliesHint);
}

bool flag(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_boolean() && it->get<bool>();
}

}  // namespace

HfTokenizer::HfTokenizer(const std::string& path) : file_(path) {
  if (is_dir(path)) file_ = path + (path.empty() || path.back() == '/' ? "" : "/") + "tokenizer.json";
  const std::string text = read_all(file_);
  try {
    load(text);
  } catch (const LoadError& e) {
    throw LoadError(e.code(), sdk::str_cat("hf-tokenizer: tokenizer_model '", file_, "': ", e.message()), e.hint());
  }
  const size_t slash = file_.rfind('/');
  const std::string config = (slash == std::string::npos ? std::string() : file_.substr(0, slash + 1)) +
                             "tokenizer_config.json";
  load_special_names(config);
}

void HfTokenizer::load(const std::string& text) {
  const json j = parse_json(text, file_);
  if (!j.is_object() || !j.contains("model"))
    throw LoadError("expected a JSON object with a \"model\" (is this a tokenizer.json?)", kFileHint);
  const json null;
  auto get = [&](const char* key) -> const json& {
    auto it = j.find(key);
    return it == j.end() ? null : *it;
  };
  load_pre_tokenizer(get("pre_tokenizer"));  // first: it says whether the model is byte-level
  load_normalizer(get("normalizer"));

  const json& model = get("model");
  if (type_of(model) != "BPE" && !(model.is_object() && !model.contains("type") && model.contains("merges")))
    throw unsupported("model", model);
  model_ = std::make_unique<BpeModel>(model, byte_level_);
  vocab_size_ = model_->max_id() + 1;

  // Added tokens.
  const json& added = get("added_tokens");
  if (!added.is_null() && !added.is_array()) throw LoadError("\"added_tokens\" must be an array", kFileHint);
  for (const json& a : added.is_array() ? added : json::array()) {
    AddedToken t;
    if (!a.is_object() || !a.contains("id") || !a["id"].is_number_integer() || !a.contains("content") ||
        !a["content"].is_string())
      throw LoadError(sdk::str_cat("added token ", a.dump().substr(0, 200), " needs an integer id and a content"),
                      kFileHint);
    t.id = a["id"].get<int32_t>();
    t.content = a["content"].get<std::string>();
    t.special = flag(a, "special");
    t.lstrip = flag(a, "lstrip");
    t.rstrip = flag(a, "rstrip");
    if (t.id < 0 || t.content.empty()) throw LoadError(sdk::str_cat("added token ", a.dump(), " is invalid"), kFileHint);
    if (flag(a, "single_word"))
      throw LoadError(sdk::str_cat("added token ", a.dump(), ": single_word is not implemented"), kFamiliesHint);
    t.normalized = flag(a, "normalized");
    vocab_size_ = std::max<int64_t>(vocab_size_, int64_t{t.id} + 1);
    added_.push_back(t);
  }
  added_index_.assign(static_cast<size_t>(vocab_size_), -1);
  for (size_t i = 0; i < added_.size(); ++i)
    if (added_index_[added_[i].id] < 0) added_index_[added_[i].id] = static_cast<int32_t>(i);
  // HF finds "normalized" added tokens in the normalized text, the others in the raw text.
  std::vector<AddedToken> raw, normalized;
  for (const AddedToken& t : added_) (t.normalized ? normalized : raw).push_back(t);
  matcher_.build(raw);
  normalized_matcher_.build(normalized);

  load_post_processor(get("post_processor"));
  decoder_.parse(get("decoder"));
}

void HfTokenizer::load_normalizer(const json& n) {
  if (n.is_null()) return;
  const std::string type = type_of(n);
  if (type == "Sequence") {
    for (const json& sub : n.value("normalizers", json::array())) load_normalizer(sub);
  } else if (type == "NFC") {
    normalizer_.push_back({NormalizeStep::kNfc, {}, {}});
  } else if (type == "Prepend" && n.contains("prepend") && n["prepend"].is_string()) {
    normalizer_.push_back({NormalizeStep::kPrepend, {}, n["prepend"].get<std::string>()});
  } else if (type == "Replace" && n.contains("pattern") && n["pattern"].is_object() && n["pattern"].contains("String") &&
             n["pattern"]["String"].is_string() && n.value("content", json()).is_string()) {
    normalizer_.push_back(
        {NormalizeStep::kReplace, n["pattern"]["String"].get<std::string>(), n["content"].get<std::string>()});
  } else {
    throw unsupported("normalizer", n);
  }
}

void HfTokenizer::load_pre_tokenizer(const json& p) {
  if (p.is_null()) return;
  const std::string type = type_of(p);
  if (type == "Sequence") {
    for (const json& sub : p.value("pretokenizers", json::array())) load_pre_tokenizer(sub);
  } else if (type == "Split") {
    const json pattern = p.value("pattern", json());
    const std::string behavior = p.value("behavior", std::string());
    std::optional<SplitPattern> known;
    if (pattern.is_object() && pattern.contains("Regex") && pattern["Regex"].is_string())
      known = recognize_split_regex(pattern["Regex"].get<std::string>());
    if (!known || behavior != "Isolated" || flag(p, "invert"))
      throw LoadError(sdk::str_cat("the pre_tokenizer Split ", p.dump().substr(0, 400), " is not implemented"),
                      "implemented: Split with behavior \"Isolated\", invert false and the exact regex of Llama-3, Qwen2 "
                      "or GPT-2 (the patterns are hand-written scanners, not a regex engine)");
    splits_.push_back(*known);
  } else if (type == "ByteLevel") {
    if (flag(p, "add_prefix_space"))
      throw LoadError("the pre_tokenizer ByteLevel with add_prefix_space = true is not implemented",
                      "Llama-3 and GPT-NeoX use add_prefix_space = false");
    byte_level_ = true;
    // use_regex (default true) splits with GPT-2's pattern before the byte mapping.
    if (!p.contains("use_regex") || flag(p, "use_regex")) splits_.push_back(SplitPattern::kGpt2);
  } else {
    throw unsupported("pre_tokenizer", p);
  }
}

void HfTokenizer::load_post_processor(const json& p) {
  if (p.is_null() || type_of(p) == "ByteLevel") return;  // ByteLevel only trims offsets
  const std::string type = type_of(p);
  if (type == "Sequence") {
    for (const json& sub : p.value("processors", json::array())) load_post_processor(sub);
    return;
  }
  if (type != "TemplateProcessing") throw unsupported("post_processor", p);
  // "single": [{"SpecialToken": {"id": "<s>"}}, {"Sequence": {"id": "A"}}, ...]
  const json specials = p.value("special_tokens", json::object());
  bool seen_a = false;
  for (const json& piece : p.value("single", json::array())) {
    if (piece.contains("Sequence")) {
      if (piece["Sequence"].value("id", std::string()) != "A" || seen_a) throw unsupported("post_processor", p);
      seen_a = true;
    } else if (piece.contains("SpecialToken")) {
      const std::string name = piece["SpecialToken"].value("id", std::string());
      auto it = specials.find(name);
      if (it == specials.end() || !it->contains("ids") || !(*it)["ids"].is_array())
        throw LoadError(sdk::str_cat("post_processor: the special token '", name, "' has no ids in special_tokens"),
                        kFileHint);
      for (const json& id : (*it)["ids"]) (seen_a ? suffix_ : prefix_).push_back(id.get<int32_t>());
    } else {
      throw unsupported("post_processor", p);
    }
  }
  if (!seen_a) throw unsupported("post_processor", p);
}

std::optional<int32_t> HfTokenizer::id_of(const std::string& content) const {
  for (const AddedToken& t : added_)
    if (t.content == content) return t.id;
  return model_->token_to_id(content);
}

void HfTokenizer::load_special_names(const std::string& config_file) {
  json config = json::object();
  if (is_file(config_file)) {
    config = parse_json(read_all(config_file), config_file);
    if (!config.is_object()) config = json::object();
  }
  struct Known {
    const char* name;
    std::vector<std::string> fallbacks;
  };
  std::vector<Known> known = {
      {"bos", {"<|begin_of_text|>", "<s>", "<|startoftext|>", "<bos>"}},
      {"eos", {"<|end_of_text|>", "</s>", "<|endoftext|>", "<eos>"}},
      {"unk", {"<unk>"}},
      {"pad", {"<pad>", "<|pad|>", "[PAD]"}},
      {"cls", {"[CLS]", "<cls>"}},
      {"sep", {"[SEP]", "<sep>"}},
      {"mask", {"[MASK]", "<mask>"}},
  };
  if (model_->unk_id()) special_["unk"] = *model_->unk_id();
  for (const Known& k : known) {
    const std::string key = std::string(k.name) + "_token";
    auto it = config.find(key);
    if (it != config.end()) {
      // "eos_token": "</s>", or {"content": "</s>", ...}, or null (the tokenizer has none).
      std::string content;
      if (it->is_string()) content = it->get<std::string>();
      else if (it->is_object() && it->value("content", json()).is_string()) content = (*it)["content"];
      if (content.empty()) {
        special_.erase(k.name);
        continue;
      }
      const auto id = id_of(content);
      if (!id)
        throw LoadError(sdk::str_cat("hf-tokenizer: '", config_file, "': ", key, " '", content,
                                     "' is not a token of '", file_, "'"),
                        "tokenizer_config.json and tokenizer.json must come from the same tokenizer");
      special_[k.name] = *id;
      continue;
    }
    if (special_.count(k.name) != 0) continue;
    for (const std::string& f : k.fallbacks)
      if (const auto id = id_of(f)) {
        special_[k.name] = *id;
        break;
      }
  }
  if (auto eos = special_.find("eos"); eos != special_.end()) special_["eod"] = eos->second;
}

std::optional<int32_t> HfTokenizer::special_token(std::string_view name) const {
  auto it = special_.find(name);
  if (it == special_.end()) return std::nullopt;
  return it->second;
}

std::string HfTokenizer::summary() const {
  std::string splits;
  for (SplitPattern s : splits_) splits += std::string(splits.empty() ? "" : "+") + split_pattern_name(s);
  return sdk::str_cat(byte_level_ ? "byte-level " : "", "BPE, ", vocab_size_, " ids (", added_.size(),
                      " added tokens), ", model_->num_merges(), " merges, split ", splits.empty() ? "none" : splits,
                      model_->byte_fallback() ? ", byte_fallback" : "", ", normalizer steps ", normalizer_.size());
}

void HfTokenizer::pre_tokenize(std::string_view text, size_t step, std::vector<int32_t>& out) const {
  if (step == splits_.size()) {
    model_->tokenize(text, out);
    return;
  }
  thread_local std::vector<size_t> scratch;  // the common single-split case reuses one buffer
  std::vector<size_t> nested;
  std::vector<size_t>& ends = step + 1 == splits_.size() ? scratch : nested;
  ends.clear();
  split_ends(splits_[step], text, ends);
  size_t begin = 0;
  for (size_t end : ends) {
    pre_tokenize(text.substr(begin, end - begin), step + 1, out);
    begin = end;
  }
}

void HfTokenizer::normalize(std::string_view text, std::string& out) const {
  out.assign(text);
  std::string next;
  for (const NormalizeStep& n : normalizer_) {
    switch (n.kind) {
      case NormalizeStep::kNfc:
        next.clear();
        nfc(out, next);
        out.swap(next);
        break;
      case NormalizeStep::kPrepend:
        if (!out.empty()) out.insert(0, n.content);
        break;
      case NormalizeStep::kReplace:
        if (n.pattern.empty() || out.find(n.pattern) == std::string::npos) break;
        next.clear();
        size_t pos = 0;
        for (size_t hit; (hit = out.find(n.pattern, pos)) != std::string::npos; pos = hit + n.pattern.size())
          next.append(out, pos, hit - pos).append(n.content);
        next.append(out, pos, std::string::npos);
        out.swap(next);
        break;
    }
  }
}

void HfTokenizer::encode_normalized(std::string_view text, std::vector<int32_t>& out) const {
  if (normalized_matcher_.empty()) {
    pre_tokenize(text, 0, out);
    return;
  }
  normalized_matcher_.split(
      text, [&](std::string_view seg) { pre_tokenize(seg, 0, out); }, [&](int32_t id) { out.push_back(id); });
}

void HfTokenizer::encode_segment(std::string_view segment, std::vector<int32_t>& out) const {
  if (normalizer_.empty()) {
    encode_normalized(segment, out);
    return;
  }
  thread_local std::string normalized;
  normalize(segment, normalized);
  encode_normalized(normalized, out);  // (nothing below touches `normalized`)
}

void HfTokenizer::encode(std::string_view text, bool add_special_tokens, std::vector<int32_t>& out) const {
  MH_CHECK(byte_level_ || model_->byte_fallback() || is_valid_utf8(text.data(), text.size()), MH_ERR_INVALID_ARG,
           "hf-tokenizer: the text is not valid UTF-8 HINT: this tokenizer (", file_,
           ") is neither byte-level nor byte_fallback, so it cannot represent arbitrary bytes");
  if (add_special_tokens) out.insert(out.end(), prefix_.begin(), prefix_.end());
  if (matcher_.empty()) {
    encode_segment(text, out);
  } else {
    matcher_.split(
        text, [&](std::string_view seg) { encode_segment(seg, out); }, [&](int32_t id) { out.push_back(id); });
  }
  if (add_special_tokens) out.insert(out.end(), suffix_.begin(), suffix_.end());
}

std::vector<int32_t> HfTokenizer::encode(std::string_view text, bool add_special_tokens) const {
  std::vector<int32_t> ids;
  encode(text, add_special_tokens, ids);
  return ids;
}

void HfTokenizer::decode(const int32_t* ids, size_t n, bool skip_special_tokens, std::string& out) const {
  std::vector<std::string> tokens;
  tokens.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    const int32_t id = ids[i];
    const int32_t added = (id >= 0 && id < vocab_size_) ? added_index_[id] : -1;
    if (added >= 0) {
      if (!(skip_special_tokens && added_[added].special)) tokens.push_back(added_[added].content);
      continue;
    }
    const std::string& t = model_->id_to_token(id);
    MH_CHECK(!t.empty(), MH_ERR_INVALID_ARG, "hf-tokenizer: cannot decode id ", id, " at position ", i,
             ": not a token of ", file_, " HINT: ids must come from this tokenizer (vocab_size ", vocab_size_, ")");
    tokens.push_back(t);
  }
  decoder_.decode(tokens, out);
}

std::string HfTokenizer::decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const {
  std::string out;
  decode(ids.data(), ids.size(), skip_special_tokens, out);
  return out;
}

}  // namespace megahost::hf
