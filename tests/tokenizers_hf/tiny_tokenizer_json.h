// Small synthetic tokenizer.json files for tests that must run without fetched data.
#pragma once

#include <nlohmann/json.hpp>

#include <string>

namespace hf_test {

// GPT-2's byte -> printable character map, as UTF-8 (a space is "Ġ").
std::string byte_char(unsigned char b);

// A byte-level BPE in the Llama-3 layout: 256 byte tokens (id = byte), merges
// "Ġ t" -> "Ġt" (256), "h e" -> "he" (257), "Ġt he" -> "Ġthe" (258), added token
// "<|endoftext|>" (259, special), pre_tokenizer Sequence[Split(Llama-3 regex), ByteLevel],
// decoder ByteLevel, post_processor TemplateProcessing adding <|endoftext|> first.
// merges_as_pairs writes merges as [a, b] (tokenizers >= 0.20) instead of "a b".
nlohmann::json tiny_byte_level(bool merges_as_pairs = false);

// A Llama-2-style BPE: normalizer Prepend("▁") + Replace(" ", "▁"), model with byte_fallback
// (<0x00>..<0xFF> = ids 3..258), unk <unk> = 0, <s> = 1, </s> = 2, characters ▁ a b (259..261),
// merges "▁ a" -> "▁a" (262), "a b" -> "ab" (263), "▁a b" -> "▁ab" (264); decoder Replace,
// ByteFallback, Fuse, Strip; post_processor TemplateProcessing <s> $A.
nlohmann::json tiny_byte_fallback();

// Writes j to a fresh file under the test temp folder and returns its path.
std::string write_temp(const nlohmann::json& j, const std::string& name);

// The Llama-3 split regex as written in tokenizer.json.
extern const char* const kLlama3Regex;

}  // namespace hf_test
