#include "tiny_tokenizer_json.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <vector>

#include <unistd.h>

namespace hf_test {

using nlohmann::json;

const char* const kLlama3Regex =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

std::string byte_char(unsigned char b) {
  // Bytes 33..126, 161..172, 174..255 stand for themselves; the others for U+0100.. in order.
  int next = 256;
  for (int x = 0; x < 256; ++x) {
    const bool printable = (x >= 33 && x <= 126) || (x >= 161 && x <= 172) || (x >= 174 && x <= 255);
    const int cp = printable ? x : next++;
    if (x == b) {
      std::string out;
      if (cp < 0x80) out.push_back(static_cast<char>(cp));
      else out.push_back(static_cast<char>(0xC0 | (cp >> 6))), out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
      return out;
    }
  }
  return {};
}

json tiny_byte_level(bool merges_as_pairs) {
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) vocab[byte_char(static_cast<unsigned char>(b))] = b;
  vocab["Ġt"] = 256;
  vocab["he"] = 257;
  vocab["Ġthe"] = 258;
  json merges = json::array();
  for (auto [a, b] : {std::pair<const char*, const char*>{"Ġ", "t"}, {"h", "e"}, {"Ġt", "he"}}) {
    if (merges_as_pairs) merges.push_back(json::array({a, b}));
    else merges.push_back(std::string(a) + " " + b);
  }
  return json{
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens",
       {{{"id", 259}, {"content", "<|endoftext|>"}, {"single_word", false}, {"lstrip", false}, {"rstrip", false},
         {"normalized", false}, {"special", true}}}},
      {"normalizer", nullptr},
      {"pre_tokenizer",
       {{"type", "Sequence"},
        {"pretokenizers",
         {{{"type", "Split"}, {"pattern", {{"Regex", kLlama3Regex}}}, {"behavior", "Isolated"}, {"invert", false}},
          {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", false}}}}}},
      {"post_processor",
       {{"type", "TemplateProcessing"},
        {"single", {{{"SpecialToken", {{"id", "<|endoftext|>"}, {"type_id", 0}}}}, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
        {"pair", json::array()},
        {"special_tokens", {{"<|endoftext|>", {{"id", "<|endoftext|>"}, {"ids", {259}}, {"tokens", {"<|endoftext|>"}}}}}}}},
      {"decoder", {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}}},
      {"model",
       {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"continuing_subword_prefix", nullptr},
        {"end_of_word_suffix", nullptr}, {"fuse_unk", false}, {"byte_fallback", false}, {"ignore_merges", true},
        {"vocab", vocab}, {"merges", merges}}},
  };
}

json tiny_byte_fallback() {
  static const char* kHex = "0123456789ABCDEF";
  json vocab = {{"<unk>", 0}, {"<s>", 1}, {"</s>", 2}};
  for (int b = 0; b < 256; ++b) vocab[std::string("<0x") + kHex[b >> 4] + kHex[b & 15] + ">"] = 3 + b;
  vocab["▁"] = 259;
  vocab["a"] = 260;
  vocab["b"] = 261;
  vocab["▁a"] = 262;
  vocab["ab"] = 263;
  vocab["▁ab"] = 264;
  auto added = [](int id, const char* content) {
    return json{{"id", id}, {"content", content}, {"single_word", false}, {"lstrip", false}, {"rstrip", false},
                {"normalized", false}, {"special", true}};
  };
  return json{
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens", {added(0, "<unk>"), added(1, "<s>"), added(2, "</s>")}},
      {"normalizer",
       {{"type", "Sequence"},
        {"normalizers",
         {{{"type", "Prepend"}, {"prepend", "▁"}},
          {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "▁"}}}}}},
      {"pre_tokenizer", nullptr},
      {"post_processor",
       {{"type", "TemplateProcessing"},
        {"single", {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}}, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
        {"pair", json::array()},
        {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {1}}, {"tokens", {"<s>"}}}}}}}},
      {"decoder",
       {{"type", "Sequence"},
        {"decoders",
         {{{"type", "Replace"}, {"pattern", {{"String", "▁"}}}, {"content", " "}},
          {{"type", "ByteFallback"}},
          {{"type", "Fuse"}},
          {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}}},
      {"model",
       {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", "<unk>"}, {"continuing_subword_prefix", nullptr},
        {"end_of_word_suffix", nullptr}, {"fuse_unk", true}, {"byte_fallback", true},
        {"vocab", vocab}, {"merges", {"▁ a", "a b", "▁a b"}}}},
  };
}

namespace {

// Removes what write_temp created when the test process exits (unlink/rmdir, not
// std::filesystem::remove_all: that one is broken in some libtorch builds linked by core).
struct TempFiles {
  std::vector<std::string> files, dirs;  // dirs deepest first
  ~TempFiles() {
    for (const std::string& f : files) ::unlink(f.c_str());
    for (const std::string& d : dirs) ::rmdir(d.c_str());
  }
};
TempFiles& temp_files() {
  static TempFiles t;
  return t;
}

}  // namespace

std::string write_temp(const json& j, const std::string& name) {
  namespace fs = std::filesystem;
  const fs::path root = fs::temp_directory_path() / ("hf_tokenizer_test_" + std::to_string(::getpid()));
  const fs::path dir = root / name;
  fs::create_directories(dir);
  const fs::path file = dir / "tokenizer.json";
  std::ofstream(file) << j.dump();
  TempFiles& t = temp_files();
  t.files.push_back(file.string());
  t.files.push_back((dir / "tokenizer_config.json").string());  // some tests add one
  t.files.push_back((dir / "missing.json").string());
  t.files.push_back((dir / "broken.json").string());
  t.dirs.insert(t.dirs.begin(), dir.string());
  if (std::find(t.dirs.begin(), t.dirs.end(), root.string()) == t.dirs.end()) t.dirs.push_back(root.string());
  return file.string();
}

}  // namespace hf_test
