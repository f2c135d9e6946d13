// Unicode Normalization Form C (the tokenizer.json normalizer "NFC", used by GPT-NeoX and
// Qwen): canonical decomposition, canonical ordering, canonical composition. Data:
// nfc_tables.inc, written by gen_nfc_tables.py. Text with no character that NFC could change
// (nearly all text) is returned as it is after one table lookup per character.
#pragma once

#include <string>
#include <string_view>

namespace megahost::hf {

// Writes NFC(text) to out. Malformed UTF-8 bytes are kept as they are and block composition
// across them. [thread-safe]
void nfc(std::string_view text, std::string& out);

}  // namespace megahost::hf
