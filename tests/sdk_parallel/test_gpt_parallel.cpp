// The gpt plugin (no parallel code of its own) under TP2, TP2+SP, CP2 and TP2xCP2 against one
// process: the reported loss and every parameter's gradient, gathered to full shape after the
// host's reduction (SP-flagged grads summed over tp, every grad summed over cp), within kRelTol.
#include <gtest/gtest.h>

#include <map>
#include <mutex>

#include "../models/gpt_batches.h"
#include "../models/test_host.h"
#include "common.h"
#include "megahost/sdk/parallel/context_parallel.h"
#include "megahost/sdk/parallel/mappings.h"
#include "thread_dist.h"

namespace {

using mhtest::expect_close;

constexpr int64_t kVocab = 64, kBatch = 2, kSeq = 16;

// A model instance created through the factory, as a 1.1 host creates it.
struct Model {
  mhtest::ConfigTree config;
  mh_model* m = nullptr;
  const mh_model_api* api = nullptr;

  Model(const std::string& toml, const mh_host* host, uint32_t parallel_flags) : config(toml) {
    mhtest::recipe_seed() = 1234;
    mh_model_create_args args{};
    args.struct_size = sizeof(args);
    args.config = config.root();
    args.instance_name = "model";
    args.device = {kDLCPU, 0};
    args.param_dtype = {kDLFloat, 32, 1};
    args.padded_vocab_size = kVocab;
    args.layer_offset = 0;
    args.num_stage_layers = -1;
    args.stage_flags = MH_STAGE_FIRST | MH_STAGE_LAST;
    args.parallel_flags = parallel_flags;
    const std::string err = mhtest::take_error(mhtest::gpt_factory()->create("gpt", host, &args, &m, &api));
    if (!err.empty()) throw std::runtime_error(err);
  }
  ~Model() {
    if (m != nullptr) api->destroy(m);
  }
  std::vector<mhtest::ParamRef> params() const {
    std::vector<mhtest::ParamRef> out;
    mhtest::TestModel::expect_ok(api->visit_params(
        m,
        [](void* ctx, const mh_param_view* p) -> mh_error* {
          static_cast<std::vector<mhtest::ParamRef>*>(ctx)->push_back(
              {p->name, megahost::sdk::to_torch(p->data), megahost::sdk::to_torch(p->grad), p->tensor_parallel_dim,
               p->flags});
          return nullptr;
        },
        &out));
    return out;
  }
  mh_loss forward_backward(const mhtest::Batch& batch) {
    std::vector<std::unique_ptr<megahost::sdk::DLView>> views;
    std::vector<mh_named_tensor> named;
    for (const auto& [name, t] : batch) views.push_back(std::make_unique<megahost::sdk::DLView>(t));
    for (size_t i = 0; i < batch.size(); ++i) named.push_back({batch[i].first.c_str(), views[i]->get()});
    mh_loss loss{sizeof(mh_loss), 0, 0};
    const std::string err = mhtest::take_error(
        api->forward_backward(m, named.data(), named.size(), 1.0, mhtest::TestModel::cpu_stream(), &loss));
    if (!err.empty()) throw std::runtime_error(err);
    return loss;
  }
};

mhtest::Batch make_batch() {
  mhtest::Batch b = mhtest::random_batch(kBatch, kSeq, kVocab, 42);
  at::Generator gen = at::detail::createCPUGenerator(43);
  for (auto& [name, t] : b)
    if (name == "loss_mask") t = (at::rand({kBatch, kSeq}, gen) > 0.2).to(at::kFloat);  // some masked tokens
  b.push_back({"position_ids", at::arange(kSeq, at::kLong).unsqueeze(0).expand({kBatch, kSeq}).contiguous()});
  return b;
}

// What the host does for context parallelism: each [b, s] tensor cut to this cp rank's chunks.
mhtest::Batch cp_slice(const mhtest::Batch& full, int cp_rank, int cp) {
  mhtest::Batch out;
  for (const auto& [name, t] : full)
    out.push_back({name, megahost::sdk::parallel::context_parallel_slice(t, 1, cp_rank, cp).contiguous()});
  return out;
}

void check_layout(const std::string& toml, int tp, int cp, bool sp) {
  const mhtest::Batch batch = make_batch();
  Model single(toml, mhtest::test_host(), 0);
  const mh_loss want = single.forward_backward(batch);
  std::map<std::string, at::Tensor> want_grads, want_data;
  for (const auto& p : single.params()) want_grads[p.name] = p.grad.clone(), want_data[p.name] = p.data.clone();

  mhtest::ThreadWorld world(tp, cp);
  std::mutex mu;
  std::map<std::string, std::vector<at::Tensor>> shards;  // name -> reduced grad per tp rank
  std::map<std::string, std::pair<int32_t, uint32_t>> meta;
  world.run([&](int g) {
    const int tp_rank = world.tp_rank(g), cp_rank = world.cp_rank(g);
    Model model(toml, world.host(g), sp ? MH_PARALLEL_SEQUENCE_PARALLEL : 0u);
    const mh_loss got = model.forward_backward(cp_slice(batch, cp_rank, cp));
    EXPECT_NEAR(got.num_tokens, want.num_tokens, 0.0) << "rank " << g << " reports the whole sequence's tokens";
    EXPECT_NEAR(got.loss_sum / got.num_tokens, want.loss_sum / want.num_tokens,
                mhtest::kRelTol * want.loss_sum / want.num_tokens)
        << "rank " << g;
    // The host's reduction, done here with the same groups.
    const auto ctx = megahost::sdk::parallel::ParallelContext::from_host(world.host(g), 0);
    for (const auto& p : model.params()) {
      const bool glu = (p.flags & MH_PARAM_TP_GLU_HALVES) != 0;
      expect_close(p.data, mhtest::shard(want_data.at(p.name), p.tp_dim, tp_rank, tp, glu),
                   p.name + " starts from the single-process slice");
      at::Tensor grad = p.grad.clone();
      if (p.flags & MH_PARAM_SEQUENCE_PARALLEL) ctx->tp.all_reduce(grad);
      ctx->cp.all_reduce(grad);
      if (cp_rank != 0) continue;
      std::lock_guard<std::mutex> lock(mu);
      auto& v = shards[p.name];
      v.resize(tp);
      v[tp_rank] = grad;
      meta[p.name] = {p.tp_dim, p.flags};
    }
  });
  ASSERT_EQ(shards.size(), want_grads.size());
  for (const auto& [name, parts] : shards) {
    const auto [dim, flags] = meta.at(name);
    at::Tensor full = parts[0];
    if (dim >= 0 && tp > 1) {
      if (flags & MH_PARAM_TP_GLU_HALVES) {  // [gate_r, up_r] per rank -> [gate, up]
        std::vector<at::Tensor> gates, ups;
        for (const auto& p : parts) gates.push_back(p.chunk(2, dim)[0]), ups.push_back(p.chunk(2, dim)[1]);
        full = at::cat({at::cat(gates, dim), at::cat(ups, dim)}, dim);
      } else {
        full = at::cat(parts, dim);
      }
    } else {
      for (int r = 1; r < tp; ++r) expect_close(parts[r], parts[0], name + " is replicated across tp ranks");
    }
    expect_close(full, want_grads.at(name), name + " grad");
  }
}

TEST(GptParallel, Tp2) { check_layout(mhtest::tiny_gpt_toml(), 2, 1, false); }
TEST(GptParallel, Tp2SequenceParallel) { check_layout(mhtest::tiny_gpt_toml(), 2, 1, true); }
TEST(GptParallel, Cp2) { check_layout(mhtest::tiny_gpt_toml(), 1, 2, false); }
TEST(GptParallel, Tp2Cp2SequenceParallel) { check_layout(mhtest::tiny_gpt_toml(), 2, 2, true); }
TEST(GptParallel, LlamaTp2) { check_layout(mhtest::tiny_llama_toml(), 2, 1, false); }
TEST(GptParallel, LlamaTp2SequenceParallel) { check_layout(mhtest::tiny_llama_toml(), 2, 1, true); }
TEST(GptParallel, LlamaCp2) { check_layout(mhtest::tiny_llama_toml(), 1, 2, false); }
TEST(GptParallel, LlamaTp2Cp2) { check_layout(mhtest::tiny_llama_toml(), 2, 2, false); }

TEST(GptParallel, DivisibilityIsCheckedWithMegatronsMessages) {
  mhtest::ThreadWorld world(2, 1);
  world.run([&](int g) {
    try {
      Model m(mhtest::tiny_gpt_toml("num_query_groups = 1\ngroup_query_attention = true\n"), world.host(g), 0);
      ADD_FAILURE() << "one query group cannot be split over 2 tensor-parallel ranks";
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find("num_query_groups (1) must be a multiple of tensor_model_parallel_size (2)"),
                std::string::npos)
          << e.what();
    }
  });
}

TEST(GptParallel, LogitsExtensionRefusesTensorParallel) {
  mhtest::ThreadWorld world(2, 1);
  world.run([&](int g) {
    Model m(mhtest::tiny_gpt_toml(), world.host(g), 0);
    const auto* ext = static_cast<const mh_model_logits_ext*>(m.api->get_extension(m.m, MH_EXT_MODEL_LOGITS));
    ASSERT_NE(ext, nullptr);
    const at::Tensor tokens = at::zeros({1, 4}, at::kLong);
    megahost::sdk::DLView view(tokens);
    const std::string err = mhtest::take_error(ext->logits(
        m.m, view.get(), mhtest::TestModel::cpu_stream(),
        [](void*, const mh_named_tensor*) -> mh_error* { return nullptr; }, nullptr));
    EXPECT_NE(err.find("tensor parallel size 2"), std::string::npos) << err;
  });
}

}  // namespace
