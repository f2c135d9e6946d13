// `megahost convert` as a user runs it: Megatron's convert.py flags, both directions, and the
// refusals of what is unknown or has no meaning (a parallel layout for a Hugging Face folder).
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

namespace fs = std::filesystem;

namespace {

const std::string kMegahost = std::string(MEGAHOST_BINARY_DIR) + "/bin/megahost";
const fs::path kGpt2 = fs::path(MEGAHOST_SOURCE_DIR) / "tests/data/hf/gpt2";

struct Result {
  int code = -1;
  std::string out;  // stdout and stderr
};

Result convert(const std::string& args) {
  const std::string cmd = kMegahost + " convert --model-type GPT " + args + " 2>&1";
  Result r;
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  const int status = pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

}  // namespace

TEST(ConvertCli, HfToMegahostAndBack) {
  const fs::path dir = fs::temp_directory_path() / ("mh-convert-cli-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  const Result in = convert("--loader hf --saver megahost --load-dir " + kGpt2.string() + " --save-dir " +
                            (dir / "mh").string());
  ASSERT_EQ(in.code, 0) << in.out;
  EXPECT_TRUE(fs::exists(dir / "mh/recipe.toml"));
  EXPECT_TRUE(fs::exists(dir / "mh/iter_0000000"));
  EXPECT_TRUE(fs::exists(dir / "mh/latest_checkpointed_iteration.txt"));
  const Result out = convert("--loader megahost --saver hf --load-dir " + (dir / "mh").string() + " --save-dir " +
                             (dir / "hf").string());
  ASSERT_EQ(out.code, 0) << out.out;
  EXPECT_EQ(fs::file_size(dir / "hf/model.safetensors"), fs::file_size(kGpt2 / "model.safetensors"));
  EXPECT_TRUE(fs::exists(dir / "hf/config.json"));
  fs::remove_all(dir);
}

// --target-*: HF -> megahost writes the rank folders of that layout; HF -> megahost -> HF at
// TP2 x PP2 gives back the same bytes; a Hugging Face saver has no layout to target.
TEST(ConvertCli, TargetLayoutRoundTripAndRefusals) {
  const fs::path dir = fs::temp_directory_path() / ("mh-convert-cli-tp-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  const Result in = convert("--loader hf --saver megahost --load-dir " + kGpt2.string() + " --save-dir " +
                            (dir / "mh").string() +
                            " --target-tensor-parallel-size 2 --target-pipeline-parallel-size 2");
  ASSERT_EQ(in.code, 0) << in.out;
  for (const char* rank : {"rank_00000", "rank_00001", "rank_00002", "rank_00003"})
    EXPECT_TRUE(fs::exists(dir / "mh/iter_0000000" / rank / "index.json")) << rank;
  const Result out = convert("--loader megahost --saver hf --load-dir " + (dir / "mh").string() + " --save-dir " +
                             (dir / "hf").string());
  ASSERT_EQ(out.code, 0) << out.out;
  EXPECT_EQ(fs::file_size(dir / "hf/model.safetensors"), fs::file_size(kGpt2 / "model.safetensors"));
  const Result to_hf = convert("--loader megahost --saver hf --load-dir " + (dir / "mh").string() + " --save-dir " +
                               (dir / "hf2").string() + " --target-tensor-parallel-size 2");
  EXPECT_EQ(to_hf.code, 1) << to_hf.out;
  EXPECT_NE(to_hf.out.find("a Hugging Face folder has no parallel layout"), std::string::npos) << to_hf.out;
  const Result odd = convert("--loader hf --saver megahost --load-dir " + kGpt2.string() + " --save-dir " +
                             (dir / "odd").string() + " --target-pipeline-parallel-size 3");
  EXPECT_EQ(odd.code, 1) << odd.out;
  EXPECT_NE(odd.out.find("do not split into 3 pipeline stages"), std::string::npos) << odd.out;
  fs::remove_all(dir);
}

// Loaders and savers are [checkpoint] format plugins by id (Megatron's loader_*/saver_* role):
// HF -> safetensors-format megahost checkpoint -> megahost-tensors -> HF gives the same bytes,
// and the safetensors one goes to HF directly too.
TEST(ConvertCli, FormatPluginsAsLoadersAndSavers) {
  const fs::path dir = fs::temp_directory_path() / ("mh-convert-cli-fmt-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  const Result in = convert("--loader hf --saver safetensors --load-dir " + kGpt2.string() + " --save-dir " +
                            (dir / "st").string());
  ASSERT_EQ(in.code, 0) << in.out;
  EXPECT_TRUE(fs::exists(dir / "st/iter_0000000/model.safetensors"));
  const Result copy = convert("--loader safetensors --saver megahost-tensors --load-dir " + (dir / "st").string() +
                              " --save-dir " + (dir / "mh").string());
  ASSERT_EQ(copy.code, 0) << copy.out;
  EXPECT_NE(copy.out.find("(format 'megahost-tensors')"), std::string::npos) << copy.out;
  EXPECT_TRUE(fs::exists(dir / "mh/iter_0000000/index.json"));
  EXPECT_TRUE(fs::exists(dir / "mh/latest_checkpointed_iteration.txt"));
  for (const char* from : {"mh", "st"}) {
    const std::string loader = std::string(from) == "mh" ? "megahost" : "safetensors";
    const fs::path hf = dir / (std::string("hf_") + from);
    const Result out = convert("--loader " + loader + " --saver hf --load-dir " + (dir / from).string() +
                               " --save-dir " + hf.string());
    ASSERT_EQ(out.code, 0) << out.out;
    std::ifstream a(hf / "model.safetensors", std::ios::binary), b(kGpt2 / "model.safetensors", std::ios::binary);
    const std::string got((std::istreambuf_iterator<char>(a)), std::istreambuf_iterator<char>());
    const std::string want((std::istreambuf_iterator<char>(b)), std::istreambuf_iterator<char>());
    EXPECT_TRUE(got == want) << from << ": not the source's bytes";
  }
  const Result same = convert("--loader megahost --saver megahost-tensors --load-dir " + (dir / "mh").string() +
                              " --save-dir " + (dir / "same").string());
  EXPECT_EQ(same.code, 1) << same.out;
  EXPECT_NE(same.out.find("needs no conversion to change layout"), std::string::npos) << same.out;
  const Result layout = convert("--loader megahost --saver safetensors --load-dir " + (dir / "mh").string() +
                                " --save-dir " + (dir / "tp2").string() + " --target-tensor-parallel-size 2");
  EXPECT_EQ(layout.code, 1) << layout.out;
  EXPECT_NE(layout.out.find("the layout stays as saved"), std::string::npos) << layout.out;
  fs::remove_all(dir);
}

TEST(ConvertCli, RefusesUnknownLoadersAndMissingFlags) {
  const Result loader = convert("--loader mcore --saver hf --load-dir a --save-dir b");
  EXPECT_EQ(loader.code, 1) << loader.out;
  EXPECT_NE(loader.out.find("--loader mcore is unknown"), std::string::npos) << loader.out;
  EXPECT_NE(loader.out.find("known: "), std::string::npos) << "the format plugins it knows:\n" << loader.out;
  const Result missing = convert("--loader hf --saver megahost --load-dir " + kGpt2.string());
  EXPECT_EQ(missing.code, 2) << missing.out;
  EXPECT_NE(missing.out.find("--save-dir is required"), std::string::npos) << missing.out;
}
