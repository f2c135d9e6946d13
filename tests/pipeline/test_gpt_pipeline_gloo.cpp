// The gpt plugin split into pipeline stages across 2 processes over c10d Gloo (PP2 1F1B and
// PP2 interleaved, tied and untied embeddings, 4 micro-batches): the last stage's losses and
// every gradient (the tied embedding's two copies summed, as the host's "embedding" all-reduce
// does) equal one process's within 1e-5 relative (gpt_pipeline.h).
//
// The test re-runs its own binary as the workers (no fork after libtorch's threads started).
// p2p is a test-local PipelineComm over ProcessGroupGloo; the trainer's comes from the parallel
// runtime's "pp" group (pipeline_comm_from_runtime).
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <torch/csrc/distributed/c10d/FileStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "gpt_pipeline.h"

extern char** environ;

namespace {

using namespace gptpp;
namespace fs = std::filesystem;

class GlooComm : public core::PipelineComm {
 public:
  GlooComm(c10::intrusive_ptr<c10d::ProcessGroup> pg) : pg_(std::move(pg)) {}
  int64_t rank() const override { return pg_->getRank(); }
  int64_t size() const override { return pg_->getSize(); }
  void exchange(core::P2PStep& s, const std::vector<int64_t>& shape, at::ScalarType dtype) override {
    const int next = static_cast<int>((rank() + 1) % size()), prev = static_cast<int>((rank() + size() - 1) % size());
    std::vector<c10::intrusive_ptr<c10d::Work>> work;
    std::vector<std::vector<at::Tensor>> keep;  // tensors stay alive until waited
    auto send = [&](const at::Tensor& t, int peer) {
      keep.push_back({t.contiguous()});
      work.push_back(pg_->send(keep.back(), peer, 0));
    };
    auto recv = [&](at::Tensor* out, int peer) {
      *out = at::empty(shape, at::TensorOptions().dtype(dtype));
      keep.push_back({*out});
      work.push_back(pg_->recv(keep.back(), peer, 0));
    };
    if (s.send_next.defined()) send(s.send_next, next);  // forward direction first
    if (s.recv_prev) recv(&s.from_prev, prev);
    if (s.send_prev.defined()) send(s.send_prev, prev);
    if (s.recv_next) recv(&s.from_next, next);
    for (auto& w : work) w->wait();
  }

 private:
  c10::intrusive_ptr<c10d::ProcessGroup> pg_;
};

// Results pass between processes as raw float32 files: <dir>/<rank>/{losses, grad.<i>, names}.
void save(const fs::path& dir, const RankResult& r) {
  fs::create_directories(dir);
  std::ofstream losses(dir / "losses");
  losses.precision(17);
  for (const auto& l : r.losses) losses << l.loss_sum << " " << l.num_tokens << "\n";
  std::ofstream names(dir / "names");
  for (size_t i = 0; i < r.grads.size(); ++i) {
    names << r.grads[i].first << "\n";
    const at::Tensor g = r.grads[i].second.contiguous().to(at::kFloat);
    std::ofstream out(dir / ("grad." + std::to_string(i)), std::ios::binary);
    out.write(static_cast<const char*>(g.data_ptr()), static_cast<std::streamsize>(g.numel() * sizeof(float)));
  }
}

RankResult load(const fs::path& dir, const std::map<std::string, at::Tensor>& like) {
  RankResult r;
  std::ifstream losses(dir / "losses");
  core::Loss l;
  while (losses >> l.loss_sum >> l.num_tokens) r.losses.push_back(l);
  std::ifstream names(dir / "names");
  std::string name;
  for (size_t i = 0; std::getline(names, name); ++i) {
    at::Tensor g = at::empty_like(like.at(name)).to(at::kFloat);
    std::ifstream in(dir / ("grad." + std::to_string(i)), std::ios::binary);
    in.read(static_cast<char*>(g.data_ptr()), static_cast<std::streamsize>(g.numel() * sizeof(float)));
    EXPECT_TRUE(in.good()) << dir << " grad " << i;
    r.grads.emplace_back(name, g);
  }
  return r;
}

void worker(const fs::path& dir, int rank, bool untied, int64_t layers_per_virtual) {
  auto store = c10::make_intrusive<c10d::FileStore>((dir / "store").string(), 2);
  auto opts = c10d::ProcessGroupGloo::Options::create();
  opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
  auto pg = c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, 2, opts);
  GlooComm comm(pg);
  auto chunks = build_chunks(untied, 2, layers_per_virtual, rank);
  save(dir / std::to_string(rank), run_step(chunks, &comm));
}

// Parent: reference in this process, 2 workers of this same test, then compare.
void run_pp2(bool untied, int64_t layers_per_virtual) {
  const char* role = std::getenv("MH_PP_TEST_RANK");
  const char* dir_env = std::getenv("MH_PP_TEST_DIR");
  if (role != nullptr && dir_env != nullptr) {
    worker(dir_env, std::atoi(role), untied, layers_per_virtual);
    return;
  }
  const RankResult ref = reference(untied);
  const fs::path dir = fs::temp_directory_path() / ("mh_pp_test_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  const std::string filter = std::string("--gtest_filter=") + info->test_suite_name() + "." + info->name();
  std::vector<pid_t> pids;
  for (int r = 0; r < 2; ++r) {
    std::vector<std::string> env_strings = {"MH_PP_TEST_RANK=" + std::to_string(r), "MH_PP_TEST_DIR=" + dir.string()};
    std::vector<char*> env;
    for (auto& e : env_strings) env.push_back(e.data());
    for (char** e = environ; *e != nullptr; ++e) env.push_back(*e);
    env.push_back(nullptr);
    std::string exe = fs::read_symlink("/proc/self/exe").string(), f = filter;
    char* argv[] = {exe.data(), f.data(), nullptr};
    pid_t pid = 0;
    ASSERT_EQ(posix_spawn(&pid, exe.c_str(), nullptr, nullptr, argv, env.data()), 0);
    pids.push_back(pid);
  }
  for (size_t r = 0; r < pids.size(); ++r) {
    int status = 0;
    ASSERT_EQ(waitpid(pids[r], &status, 0), pids[r]);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "worker " << r << " failed (status " << status << ")";
  }
  std::map<std::string, at::Tensor> like;
  for (const auto& [name, g] : ref.grads) like.emplace(name, g);
  std::vector<RankResult> ranks;
  for (int r = 0; r < 2; ++r) ranks.push_back(load(dir / std::to_string(r), like));
  expect_matches(ref, ranks);
  fs::remove_all(dir);
}

TEST(GptPipelineGloo, PP2OneFOneBTied) { run_pp2(false, 0); }
TEST(GptPipelineGloo, PP2OneFOneBUntied) { run_pp2(true, 0); }
TEST(GptPipelineGloo, PP2InterleavedTied) { run_pp2(false, 1); }
TEST(GptPipelineGloo, PP2InterleavedUntied) { run_pp2(true, 1); }

}  // namespace
