// `megahost preprocess --tokenizer-type BertWordPieceLowerCase`, as a user runs it: the .bin/.idx
// hold Megatron's ids for every golden line (EOD = [EOS] appended to non-empty documents, uint16
// tokens, one sequence per document), built here from the golden file and the format table.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <nlohmann/json.hpp>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "test_util.h"

using namespace bert_test;

namespace {

const std::string kMegahost = std::string(MEGAHOST_BINARY_DIR) + "/bin/megahost";

// Runs the host; returns its exit code and puts stdout + stderr in *out.
int run_megahost(const std::string& args, std::string* out) {
  FILE* p = popen((kMegahost + " " + args + " 2>&1").c_str(), "r");
  if (p == nullptr) return -1;
  char buf[4096];
  for (size_t n; (n = fread(buf, 1, sizeof(buf), p)) > 0;) out->append(buf, n);
  const int status = pclose(p);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::string read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

template <typename T>
void put(std::string& s, T v) {
  s.append(reinterpret_cast<const char*>(&v), sizeof(v));
}

}  // namespace

TEST(BertPreprocess, BinAndIdxHoldMegatronsIds) {
  const auto lines = read_golden(kGoldenDir / "bert_wordpiece_lower_ids.jsonl");
  const int32_t eod = 12130;  // [EOS], appended after the 12129 lines with [BOS]
  TempDir dir;
  std::ofstream jsonl(dir / "corpus.jsonl", std::ios::binary);
  std::string bin, idx("MMIDIDX\0\0", 9);
  std::vector<int32_t> lengths;
  std::vector<int64_t> doc_index{0};
  for (const auto& l : lines) {
    jsonl << nlohmann::json{{"text", l.text}}.dump() << "\n";
    if (!l.ids.empty()) {  // Megatron drops empty sequences; the document still ends
      for (int32_t id : l.ids) put(bin, static_cast<uint16_t>(id));
      put(bin, static_cast<uint16_t>(eod));
      lengths.push_back(static_cast<int32_t>(l.ids.size() + 1));
    }
    doc_index.push_back(static_cast<int64_t>(lengths.size()));
  }
  jsonl.close();
  put(idx, uint64_t{1});
  put(idx, uint8_t{8});  // uint16: the vocabulary is below 65,500
  put(idx, static_cast<uint64_t>(lengths.size()));
  put(idx, static_cast<uint64_t>(doc_index.size()));
  for (int32_t l : lengths) put(idx, l);
  int64_t pointer = 0;
  for (int32_t l : lengths) {
    put(idx, pointer);
    pointer += int64_t{2} * l;
  }
  for (int64_t d : doc_index) put(idx, d);

  std::string out;
  const int code = run_megahost("preprocess --input " + (dir / "corpus.jsonl").string() + " --output-prefix " +
                                    (dir / "bert").string() + " --tokenizer-type BertWordPieceLowerCase --vocab-file " +
                                    kUncasedVocab.string() + " --append-eod --workers 2",
                                &out);
  ASSERT_EQ(code, 0) << out;
  EXPECT_TRUE(read_bytes(dir / "bert_text_document.bin") == bin) << out;
  EXPECT_TRUE(read_bytes(dir / "bert_text_document.idx") == idx) << out;
}
