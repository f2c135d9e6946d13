// The step kinds of converter rules (MH_CONVERT_STEP_*): every step is a reshape, transpose,
// split or concatenation, so foreign -> megahost -> foreign is bit-identical.
#include <ATen/ops/cat.h>
#include <ATen/ops/split_with_sizes.h>
#include <ATen/ops/zeros.h>

#include "megahost/core/convert/converter.h"
#include "megahost/core/error.h"

namespace megahost::core {

namespace {

// q [np*hn, ...], k/v [ng*hn, ...] -> Megatron's grouped rows [ng * (np/ng + 2) * hn, ...]:
// per query group its np/ng query heads, then its key head, then its value head.
at::Tensor group_qkv(const QkvGeometry& g, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  std::vector<int64_t> rest(q.sizes().begin() + 1, q.sizes().end());
  auto grouped = [&](const at::Tensor& t, int64_t rows) {
    std::vector<int64_t> shape = {g.groups, rows};
    shape.insert(shape.end(), rest.begin(), rest.end());
    return t.reshape(shape);
  };
  const int64_t per = g.heads / g.groups;
  at::Tensor out = at::cat({grouped(q, per * g.head_dim), grouped(k, g.head_dim), grouped(v, g.head_dim)}, 1);
  std::vector<int64_t> flat = {g.groups * (per + 2) * g.head_dim};
  flat.insert(flat.end(), rest.begin(), rest.end());
  return out.reshape(flat);
}

std::vector<at::Tensor> ungroup_qkv(const QkvGeometry& g, const at::Tensor& qkv) {
  std::vector<int64_t> rest(qkv.sizes().begin() + 1, qkv.sizes().end());
  const int64_t per = g.heads / g.groups;
  std::vector<int64_t> shape = {g.groups, (per + 2) * g.head_dim};
  shape.insert(shape.end(), rest.begin(), rest.end());
  const auto parts = at::split_with_sizes(qkv.reshape(shape), {per * g.head_dim, g.head_dim, g.head_dim}, 1);
  std::vector<at::Tensor> out;
  for (size_t i = 0; i < 3; ++i) {
    std::vector<int64_t> flat = {i == 0 ? g.heads * g.head_dim : g.groups * g.head_dim};
    flat.insert(flat.end(), rest.begin(), rest.end());
    out.push_back(parts[i].reshape(flat).contiguous());
  }
  return out;
}

// The q | k | v row counts of a fused foreign tensor.
std::vector<int64_t> qkv_sizes(const QkvGeometry& g) {
  return {g.heads * g.head_dim, g.groups * g.head_dim, g.groups * g.head_dim};
}

size_t inputs_of(int32_t step) {
  return step == MH_CONVERT_STEP_QKV_SEPARATE ? 3 : step == MH_CONVERT_STEP_GATE_UP ? 2 : 1;
}

void check_rule(const QkvGeometry& g, const ConvertRule& r) {
  MH_CORE_CHECK(r.step >= MH_CONVERT_STEP_COPY && r.step <= MH_CONVERT_STEP_VOCAB_ROWS, "rule '", r.param,
                "': unknown step kind ", r.step, "\nHINT: the converter plugin is newer than this megahost");
  MH_CORE_CHECK(r.foreign.size() == inputs_of(r.step), "rule '", r.param, "': step ", r.step, " takes ",
                inputs_of(r.step), " foreign tensor(s), the converter listed ", r.foreign.size(),
                "\nHINT: a bug in the converter plugin");
  const bool qkv = r.step == MH_CONVERT_STEP_QKV_CONV1D || r.step == MH_CONVERT_STEP_QKV_FUSED_BIAS ||
                   r.step == MH_CONVERT_STEP_QKV_SEPARATE;
  MH_CORE_CHECK(!qkv || (g.heads > 0 && g.groups > 0 && g.head_dim > 0 && g.heads % g.groups == 0), "rule '",
                r.param, "': a QKV step needs num_attention_heads, num_query_groups and kv_channels in [model]",
                "\nHINT: the converter's recipe must describe the attention heads");
}

}  // namespace

at::Tensor to_megahost(const QkvGeometry& g, const ConvertRule& r, const std::vector<at::Tensor>& foreign) {
  check_rule(g, r);
  std::vector<at::Tensor> f;  // megahost keeps float32 weights; bf16/fp16 widen exactly
  for (const auto& t : foreign) f.push_back(t.to(at::kFloat));
  switch (r.step) {
    case MH_CONVERT_STEP_COPY: return f[0].contiguous();
    case MH_CONVERT_STEP_TRANSPOSED: return f[0].t().contiguous();
    case MH_CONVERT_STEP_QKV_CONV1D: {
      const auto qkv = at::split_with_sizes(f[0].t(), qkv_sizes(g), 0);  // [q|k|v rows, h]
      return group_qkv(g, qkv[0], qkv[1], qkv[2]);
    }
    case MH_CONVERT_STEP_QKV_FUSED_BIAS: {
      const auto qkv = at::split_with_sizes(f[0], qkv_sizes(g), 0);
      return group_qkv(g, qkv[0], qkv[1], qkv[2]);
    }
    case MH_CONVERT_STEP_QKV_SEPARATE: return group_qkv(g, f[0], f[1], f[2]);
    case MH_CONVERT_STEP_GATE_UP: return at::cat({f[0], f[1]}, 0);
    case MH_CONVERT_STEP_VOCAB_ROWS: {
      // Megatron's padded rows start at zero: the padded tokens never occur.
      const int64_t vocab = f[0].size(0), padded = r.shape.at(0);
      MH_CORE_CHECK(padded >= vocab, "rule '", r.param, "': ", vocab, " vocabulary rows do not fit ", padded,
                    "\nHINT: a bug in the converter plugin");
      if (padded == vocab) return f[0].contiguous();
      std::vector<int64_t> shape = f[0].sizes().vec();
      shape[0] = padded;
      at::Tensor out = at::zeros(shape, f[0].options());
      out.narrow(0, 0, vocab).copy_(f[0]);
      return out;
    }
  }
  return {};
}

std::vector<at::Tensor> to_foreign(const QkvGeometry& g, const ConvertRule& r, const at::Tensor& mh) {
  check_rule(g, r);
  std::vector<at::Tensor> out;
  switch (r.step) {
    case MH_CONVERT_STEP_COPY: out = {mh.contiguous()}; break;
    case MH_CONVERT_STEP_TRANSPOSED: out = {mh.t().contiguous()}; break;
    case MH_CONVERT_STEP_QKV_CONV1D: out = {at::cat(ungroup_qkv(g, mh), 0).t().contiguous()}; break;
    case MH_CONVERT_STEP_QKV_FUSED_BIAS: out = {at::cat(ungroup_qkv(g, mh), 0)}; break;
    case MH_CONVERT_STEP_QKV_SEPARATE: out = ungroup_qkv(g, mh); break;
    case MH_CONVERT_STEP_GATE_UP: {
      const int64_t ffn = mh.size(0) / 2;
      out = {mh.narrow(0, 0, ffn).contiguous(), mh.narrow(0, ffn, ffn).contiguous()};
      break;
    }
    case MH_CONVERT_STEP_VOCAB_ROWS: out = {mh.narrow(0, 0, r.foreign[0].shape.at(0)).contiguous()}; break;
  }
  for (size_t i = 0; i < out.size(); ++i) out[i] = out[i].to(r.foreign[i].dtype).contiguous();
  return out;
}

}  // namespace megahost::core
