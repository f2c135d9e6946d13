// Megatron's checkpoint format converter in a run (`[checkpoint] ckpt_convert_format`,
// `ckpt_convert_save`), driven as a user would (`megahost run`, one process, CPU). A tiny GPT
// (dropout on, so the RNG states matter) trains 4 iterations and saves at 2 and 4. Its
// iteration-2 checkpoint is converted by a run that stops without training; the converted
// folder passes `ckpt verify`, holds the same bytes (same format), and a resume from it logs
// iterations 3 and 4 with the uninterrupted run's losses. Wrong combinations are refused naming
// the key.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "../common/megahost_cli.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

const std::string kGolden = std::string(MEGAHOST_TEST_DATA_DIR) + "/golden/gpt2_bpe_ids.jsonl";
constexpr double kRelTol = 1e-6;  // same layout, same process count: the same sums

using Result = mhtest::RunResult;
Result run(const std::string& args) { return mhtest::run_megahost_here(args); }

std::map<int64_t, double> read_losses(const std::string& path) {
  std::map<int64_t, double> loss;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    const json j = json::parse(line);
    if (j.value("split", "") != "valid") loss[j.at("iteration").get<int64_t>()] = j.at("lm_loss").get<double>();
  }
  return loss;
}

std::string file_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

class CkptConvertFormat : public ::testing::Test {
 protected:
  static fs::path dir_;
  static std::string recipe_;
  static std::map<int64_t, double> reference_;

  static void SetUpTestSuite() {
    dir_ = fs::temp_directory_path() / ("megahost_ckpt_convert_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    {
      std::ifstream in(kGolden);
      std::ofstream out(dir_ / "corpus.jsonl");
      std::vector<std::string> lines;
      for (std::string l; std::getline(in, l);) lines.push_back(l);
      for (size_t i = lines.size() - 100; i < lines.size(); ++i)
        out << json{{"text", json::parse(lines[i]).at("text")}}.dump() << "\n";
    }
    const Result pre = run("preprocess --input " + (dir_ / "corpus.jsonl").string() + " --output-prefix " +
                           (dir_ / "corpus").string() +
                           " --tokenizer-type ByteLevelTokenizer --append-eod --workers 1");
    ASSERT_EQ(pre.code, 0) << pre.out;
    {
      std::ofstream out(dir_ / "recipe.toml");
      out << "[model]\nplugin = 'gpt'\nnum_layers = 2\nhidden_size = 32\nnum_attention_heads = 4\n"
             "seq_length = 32\nmax_position_embeddings = 32\nhidden_dropout = 0.1\nattention_dropout = 0.1\n"
             "[tokenizer]\nplugin = 'byte-level'\n"
             "[data]\ndata_path = '" << (dir_ / "corpus_text_document").string() << "'\nsplit = '100,0,0'\n"
             "[optimizer]\nplugin = 'adamw'\nlr = 1e-3\nmin_lr = 1e-4\n"
             "[training]\nmicro_batch_size = 2\nglobal_batch_size = 4\ntrain_iters = 4\nlr_warmup_iters = 1\n"
             "eval_interval = 100\neval_iters = 0\nseed = 5\ndevice = 'cpu'\nnum_threads = 1\n"
             "[logging]\nlog_interval = 1\n"
             "[checkpoint]\nsave_interval = 2\n";
    }
    recipe_ = (dir_ / "recipe.toml").string();
    const Result ref = train("reference", "--set checkpoint.save=" + (dir_ / "ref").string());
    ASSERT_EQ(ref.code, 0) << ref.out;
    reference_ = read_losses((dir_ / "reference.jsonl").string());
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }

  static Result train(const std::string& name, const std::string& sets) {
    return run("run " + recipe_ + " --set logging.metrics_file=" + (dir_ / (name + ".jsonl")).string() + " " + sets);
  }

  // A save folder holding only the reference's iteration 2 (tracker included).
  static std::string iteration2_copy(const std::string& name) {
    const fs::path d = dir_ / name;
    fs::create_directories(d);
    fs::copy(dir_ / "ref/iter_0000002", d / "iter_0000002", fs::copy_options::recursive);
    std::ofstream(d / "latest_checkpointed_iteration.txt") << "2\n";
    return d.string();
  }

  static std::string convert_sets(const std::string& load, const std::string& format, const std::string& save) {
    return "--set checkpoint.load=" + load + " --set checkpoint.ckpt_convert_format=" + format +
           " --set checkpoint.ckpt_convert_save=" + save;
  }
};

fs::path CkptConvertFormat::dir_;
std::string CkptConvertFormat::recipe_;
std::map<int64_t, double> CkptConvertFormat::reference_;

// Into the same format (megahost-tensors), another folder: the same bytes, and a checkpoint that
// resumes exactly.
TEST_F(CkptConvertFormat, ConvertedCheckpointVerifiesAndResumesWithTheSameLosses) {
  ASSERT_EQ(reference_.size(), 4u);
  const std::string src = iteration2_copy("src");
  const fs::path out = dir_ / "converted";
  const Result conv = train("convert", convert_sets(src, "megahost-tensors", out.string()));
  ASSERT_EQ(conv.code, 0) << conv.out;
  EXPECT_NE(conv.out.find("converted checkpoint"), std::string::npos) << conv.out;
  EXPECT_NE(conv.out.find("stopping without training"), std::string::npos) << conv.out;
  EXPECT_TRUE(read_losses((dir_ / "convert.jsonl").string()).empty()) << "the conversion trained:\n" << conv.out;
  EXPECT_EQ(file_bytes(out / "latest_checkpointed_iteration.txt"), "2\n");
  for (const char* f : {"index.json", "tensors.bin"})
    EXPECT_EQ(file_bytes(out / "iter_0000002" / f), file_bytes(fs::path(src) / "iter_0000002" / f)) << f;
  const Result verify = run("ckpt verify " + out.string());
  EXPECT_EQ(verify.code, 0) << verify.out;
  // The source is left as it was: one iteration folder and its tracker.
  EXPECT_EQ(file_bytes(fs::path(src) / "latest_checkpointed_iteration.txt"), "2\n");

  const Result resumed = train("resumed", "--set checkpoint.load=" + out.string());
  ASSERT_EQ(resumed.code, 0) << resumed.out;
  const auto loss = read_losses((dir_ / "resumed.jsonl").string());
  ASSERT_EQ(loss.size(), 2u) << resumed.out;  // iterations 3 and 4
  for (int64_t it : {3, 4})
    EXPECT_NEAR(loss.at(it), reference_.at(it), kRelTol * reference_.at(it)) << "iteration " << it;
}

// Into the second format plugin (safetensors): one model.safetensors per folder, a valid
// safetensors file (header, packed payloads) under the megahost names; `ckpt verify` checks its
// CRC-32s and names a flipped byte and a truncated file; a run with [checkpoint] plugin =
// "safetensors" resumes from it with the same losses.
TEST_F(CkptConvertFormat, ConvertedIntoSafetensorsResumesWithTheSameLosses) {
  ASSERT_EQ(reference_.size(), 4u);
  const fs::path out = dir_ / "converted_st";
  const Result conv = train("convert_st", convert_sets(iteration2_copy("src_st"), "safetensors", out.string()));
  ASSERT_EQ(conv.code, 0) << conv.out;
  EXPECT_NE(conv.out.find("(format 'safetensors')"), std::string::npos) << conv.out;
  const fs::path file = out / "iter_0000002/model.safetensors";
  const std::string bytes = file_bytes(file);
  ASSERT_GT(bytes.size(), 8u);
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= uint64_t(uint8_t(bytes[i])) << (8 * i);
  const json header = json::parse(bytes.substr(8, n));
  uint64_t end = 0;
  for (const auto& [name, v] : header.items())
    if (name != "__metadata__") end = std::max(end, v.at("data_offsets").at(1).get<uint64_t>());
  EXPECT_EQ(8 + n + end, bytes.size()) << "header + packed payloads";
  EXPECT_EQ(header.at("model/embedding.word_embeddings.weight").at("dtype"), "F32");
  EXPECT_TRUE(header.contains("optimizer/embedding.word_embeddings.weight.exp_avg")) << header.dump().substr(0, 400);
  const Result verify = run("ckpt verify " + out.string() + " --plugin safetensors");
  EXPECT_EQ(verify.code, 0) << verify.out;
  // Without --plugin, ckpt finds the format that reads the folder.
  const Result detected = run("ckpt inspect " + out.string());
  EXPECT_EQ(detected.code, 0) << detected.out;
  EXPECT_NE(detected.out.find("format plugin safetensors"), std::string::npos) << detected.out;
  EXPECT_EQ(run("ckpt verify " + out.string()).code, 0);

  const Result resumed =
      train("resumed_st", "--set checkpoint.plugin=safetensors --set checkpoint.load=" + out.string());
  ASSERT_EQ(resumed.code, 0) << resumed.out;
  const auto loss = read_losses((dir_ / "resumed_st.jsonl").string());
  ASSERT_EQ(loss.size(), 2u) << resumed.out;
  for (int64_t it : {3, 4})
    EXPECT_NEAR(loss.at(it), reference_.at(it), kRelTol * reference_.at(it)) << "iteration " << it;

  // A flipped byte in the last payload is named by verify.
  {
    std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(bytes.size() - 1));
    f.put(static_cast<char>(bytes.back() ^ 0x5a));
  }
  const Result bad = run("ckpt verify " + out.string() + " --plugin safetensors");
  EXPECT_EQ(bad.code, 1) << bad.out;
  EXPECT_NE(bad.out.find("checksum mismatch for entry"), std::string::npos) << bad.out;
  // A truncated file (a save cut short would never be renamed into place, but a copy can be) is
  // incomplete: the reader refuses it without reading a payload.
  fs::resize_file(file, bytes.size() - 1);
  const Result cut = run("ckpt verify " + out.string() + " --plugin safetensors");
  EXPECT_EQ(cut.code, 1) << cut.out;
  EXPECT_NE(cut.out.find("its header promises"), std::string::npos) << cut.out;
}

// Several processes: a TP2 run's rank folders converted (under TP2) into safetensors rank
// folders with their shards.json; one process resumes from them through a resharding load and
// continues with the TP2 run's losses (1e-5: the layouts reorder sums).
TEST_F(CkptConvertFormat, Tp2CheckpointConvertedIntoSafetensorsResumesAsTp1) {
#ifndef MH_TEST_HAVE_GLOO
  GTEST_SKIP() << "megahost launch on CPU needs Gloo (libgloo-dev)";
#else
  // No dropout (TP draws it per rank) and the same padded vocabulary (512) at TP1 and TP2: both
  // layouts then train the very same model.
  const std::string same_model = "--set model.hidden_dropout=0.0 --set model.attention_dropout=0.0 "
                                 "--set parallel.make_vocab_size_divisible_by=256 ";
  const std::string tp2 = same_model + "--set parallel.tensor_model_parallel_size=2";
  auto launch = [&](const std::string& name, const std::string& sets) {
    return run("launch --nproc-per-node 2 -- run " + recipe_ + " --set logging.metrics_file=" +
               (dir_ / (name + ".jsonl")).string() + " --set parallel.distributed_timeout_minutes=1 " + sets);
  };
  const Result ref = launch("tp2_ref", tp2 + " --set checkpoint.save=" + (dir_ / "tp2_ref").string());
  ASSERT_EQ(ref.code, 0) << ref.out;
  const auto ref_loss = read_losses((dir_ / "tp2_ref.jsonl").string());
  ASSERT_EQ(ref_loss.size(), 4u) << ref.out;
  const fs::path src = dir_ / "tp2_src";
  fs::create_directories(src);
  fs::copy(dir_ / "tp2_ref/iter_0000002", src / "iter_0000002", fs::copy_options::recursive);
  std::ofstream(src / "latest_checkpointed_iteration.txt") << "2\n";
  const fs::path out = dir_ / "tp2_st";
  const Result conv = launch("tp2_convert", tp2 + " " + convert_sets(src.string(), "safetensors", out.string()));
  ASSERT_EQ(conv.code, 0) << conv.out;
  for (const char* r : {"rank_00000", "rank_00001"})
    EXPECT_TRUE(fs::exists(out / "iter_0000002" / r / "model.safetensors")) << r;
  const Result verify = run("ckpt verify " + out.string() + " --plugin safetensors");
  EXPECT_EQ(verify.code, 0) << verify.out;
  const Result resumed =
      train("tp2_st_as_tp1", same_model + "--set checkpoint.plugin=safetensors --set checkpoint.load=" + out.string());
  ASSERT_EQ(resumed.code, 0) << resumed.out;
  EXPECT_NE(resumed.out.find("resharding every tensor"), std::string::npos) << resumed.out;
  const auto loss = read_losses((dir_ / "tp2_st_as_tp1.jsonl").string());
  ASSERT_EQ(loss.size(), 2u) << resumed.out;
  for (int64_t it : {3, 4}) EXPECT_NEAR(loss.at(it), ref_loss.at(it), 1e-5 * ref_loss.at(it)) << "iteration " << it;
#endif
}

TEST_F(CkptConvertFormat, UnknownFormatIsRefusedNamingTheKey) {
  const Result r = train("bad_format", convert_sets(iteration2_copy("src_bad_format"), "no-such-format",
                                                    (dir_ / "out_bad_format").string()));
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("ckpt_convert_format = 'no-such-format'"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("megahost-tensors"), std::string::npos) << "the known ids:\n" << r.out;
  EXPECT_FALSE(fs::exists(dir_ / "out_bad_format"));
}

TEST_F(CkptConvertFormat, MissingLoadIsRefusedNamingTheKey) {
  const Result r = train("no_load", "--set checkpoint.ckpt_convert_format=megahost-tensors "
                                    "--set checkpoint.ckpt_convert_save=" + (dir_ / "out_no_load").string());
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("checkpoint.load, which is not set"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("HINT"), std::string::npos) << r.out;
}

TEST_F(CkptConvertFormat, LoadWithoutCheckpointIsRefused) {
  fs::create_directories(dir_ / "empty");
  const Result r = train("empty", convert_sets((dir_ / "empty").string(), "megahost-tensors",
                                               (dir_ / "out_empty").string()));
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("holds no checkpoint"), std::string::npos) << r.out;
}

TEST_F(CkptConvertFormat, OtherWrongCombinationsAreRefused) {
  const std::string src = iteration2_copy("src_combos");
  const Result no_save = train("no_save", "--set checkpoint.load=" + src +
                                              " --set checkpoint.ckpt_convert_format=megahost-tensors");
  EXPECT_NE(no_save.code, 0);
  EXPECT_NE(no_save.out.find("needs checkpoint.ckpt_convert_save"), std::string::npos) << no_save.out;
  const Result no_format = train("no_format", "--set checkpoint.load=" + src +
                                                  " --set checkpoint.ckpt_convert_save=" + (dir_ / "x").string());
  EXPECT_NE(no_format.code, 0);
  EXPECT_NE(no_format.out.find("ckpt_convert_save is set without ckpt_convert_format"), std::string::npos)
      << no_format.out;
  const Result same = train("same", convert_sets(src, "megahost-tensors", src));
  EXPECT_NE(same.code, 0);
  EXPECT_NE(same.out.find("is the load folder"), std::string::npos) << same.out;
  const Result finetune = train("finetune", convert_sets(src, "megahost-tensors", (dir_ / "y").string()) +
                                                " --set checkpoint.finetune=true");
  EXPECT_NE(finetune.code, 0);
  EXPECT_NE(finetune.out.find("checkpoint.finetune = true"), std::string::npos) << finetune.out;
}

}  // namespace
