// The golden Brown paragraphs as a sentence corpus, in-process: one document each, cut by
// preprocess's sentence splitter and tokenized with the golden uncased WordPiece vocabulary (what
// `megahost preprocess --split-sentences` writes). Links megahost_core, megahost_bert_wordpiece
// and nlohmann_json.
#pragma once

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include "golden.h"
#include "megahost/core/data/bert_samples.h"
#include "megahost/core/data/token_source.h"
#include "megahost/core/preprocess/sentences.h"
#include "wordpiece_tokenizer.h"

namespace mhtest::brown {

// Adds every golden text's sentences (or those of another {"text": ...} jsonl) to `source`;
// returns the .idx document indices (D + 1 boundaries over the sentences).
inline std::vector<int64_t> add_sentences(megahost::core::data::InMemoryTokenSource& source,
                                          const std::filesystem::path& jsonl = texts_jsonl()) {
  megahost::tokenizers::bert::BertWordPieceTokenizer tok(wordpiece_vocab(), /*lower_case=*/true);
  std::ifstream in(jsonl);
  std::vector<int64_t> docs{0};
  int64_t sentences = 0;
  for (std::string line; std::getline(in, line);) {
    const std::string text = nlohmann::json::parse(line).at("text").get<std::string>();
    std::vector<std::string_view> parts;
    megahost::core::prep::split_sentences(text, false, parts);
    for (std::string_view s : parts) {
      const std::vector<int32_t> ids = tok.encode(s);
      if (ids.empty()) continue;  // as preprocess: empty sentences add no sequence
      source.add(std::vector<int64_t>(ids.begin(), ids.end()));
      ++sentences;
    }
    docs.push_back(sentences);
  }
  return docs;
}

// The BERT vocabulary facts of the golden vocabulary.
inline megahost::core::data::BertVocab bert_vocab() {
  const std::vector<std::string> pieces = vocab_pieces();
  auto id_of = [&](const std::string& p) {
    return static_cast<int64_t>(std::find(pieces.begin(), pieces.end(), p) - pieces.begin());
  };
  megahost::core::data::BertVocab v;
  v.cls = id_of("[CLS]");
  v.sep = id_of("[SEP]");
  v.mask = id_of("[MASK]");
  v.pad = id_of("[PAD]");
  v.vocab_size = static_cast<int64_t>(pieces.size());
  v.is_continuation = megahost::core::data::wordpiece_continuations(pieces);
  return v;
}

}  // namespace mhtest::brown
