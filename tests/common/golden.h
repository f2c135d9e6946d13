// The golden test data (tests/data/golden): the uncased WordPiece vocabulary and the Brown
// paragraphs the BERT / T5 tests train and sample on. Needs MEGAHOST_TEST_DATA_DIR.
#pragma once

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace mhtest::brown {

inline const std::filesystem::path& golden_dir() {
  static const std::filesystem::path dir = std::filesystem::path(MEGAHOST_TEST_DATA_DIR) / "golden";
  return dir;
}

// The golden uncased WordPiece vocabulary the Brown corpus is tokenized with.
inline const std::string& wordpiece_vocab() {
  static const std::string path = (golden_dir() / "bert_wordpiece_uncased_vocab.txt").string();
  return path;
}

// Its lines: the pieces, id = line number.
inline std::vector<std::string> vocab_pieces() {
  std::vector<std::string> pieces;
  std::ifstream v(wordpiece_vocab());
  for (std::string p; std::getline(v, p);) pieces.push_back(p);
  return pieces;
}

// The Brown paragraphs with their golden uncased ids, one {"text": ..., ...} JSON per line.
inline std::filesystem::path texts_jsonl() { return golden_dir() / "bert_wordpiece_lower_ids.jsonl"; }

}  // namespace mhtest::brown
