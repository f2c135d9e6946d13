// The converter plugin handles (see megahost/core/convert/converter.h).
#include "megahost/core/convert/converter.h"

#include <ATen/ops/empty.h>

#include <functional>

#include "../create_instance.h"
#include "megahost/core/error.h"
#include "megahost/core/host_services.h"
#include "megahost/sdk/torch_interop.h"

namespace megahost::core {

namespace {

std::vector<ConvertRule> collect_rules(const std::function<mh_error*(mh_converter_rule_fn, void*)>& plan,
                                       const std::string& context) {
  std::vector<ConvertRule> out;
  auto visit = [](void* ctx, const mh_converter_rule* r) -> mh_error* {
    try {
      ConvertRule rule;
      rule.param = r->param;
      rule.step = r->step;
      rule.shape.assign(r->shape, r->shape + r->ndim);
      for (uint32_t i = 0; i < r->num_foreign; ++i) {
        const mh_converter_tensor& f = r->foreign[i];
        rule.foreign.push_back({f.name, sdk::to_scalar_type(f.dtype), std::vector<int64_t>(f.shape, f.shape + f.ndim)});
      }
      static_cast<std::vector<ConvertRule>*>(ctx)->push_back(std::move(rule));
      return nullptr;
    } catch (const std::exception& ex) {
      return make_error(MH_ERR_INTERNAL, ex.what());
    }
  };
  throw_if_error(plan(visit, &out), context);
  return out;
}

}  // namespace

Converter::Converter(mh_converter* c, const mh_converter_api* api, std::string id, std::shared_ptr<void> config_tree)
    : c_(c), api_(api), id_(std::move(id)), config_tree_(std::move(config_tree)) {}
Converter::~Converter() { api_->destroy(c_); }

Converter::Reader::Reader(mh_converter_reader* r, const mh_converter_api* api, std::string context)
    : r_(r), api_(api), context_(std::move(context)) {}
Converter::Reader::~Reader() { api_->reader_close(r_); }

std::string Converter::Reader::recipe_toml() const {
  mh_converter_source_info info{};
  info.struct_size = sizeof(info);
  throw_if_error(api_->reader_info(r_, &info), context_);
  return info.recipe_toml != nullptr ? info.recipe_toml : "";
}
std::string Converter::Reader::summary() const {
  mh_converter_source_info info{};
  info.struct_size = sizeof(info);
  throw_if_error(api_->reader_info(r_, &info), context_);
  return info.summary != nullptr ? info.summary : "";
}
std::vector<ConvertRule> Converter::Reader::plan() const {
  return collect_rules([&](mh_converter_rule_fn fn, void* ctx) { return api_->reader_plan(r_, fn, ctx); }, context_);
}
at::Tensor Converter::Reader::tensor(const ConvertForeign& f) const {
  at::Tensor t = at::empty(f.shape, at::TensorOptions().dtype(f.dtype));
  sdk::DLView view(t);
  throw_if_error(api_->reader_tensor(r_, f.name.c_str(), view.get()), context_);
  return t;
}
std::vector<std::pair<std::string, std::string>> Converter::Reader::blobs() const {
  std::vector<std::pair<std::string, std::string>> out;
  auto visit = [](void* ctx, const mh_converter_blob* b) -> mh_error* {
    static_cast<std::vector<std::pair<std::string, std::string>>*>(ctx)->emplace_back(
        b->name, std::string(static_cast<const char*>(b->bytes), b->len));
    return nullptr;
  };
  throw_if_error(api_->reader_blobs(r_, visit, &out), context_);
  return out;
}

Converter::Writer::Writer(mh_converter_writer* w, const mh_converter_api* api, std::string context)
    : w_(w), api_(api), context_(std::move(context)) {}
Converter::Writer::~Writer() { api_->writer_abort(w_); }

std::vector<ConvertRule> Converter::Writer::plan() const {
  return collect_rules([&](mh_converter_rule_fn fn, void* ctx) { return api_->writer_plan(w_, fn, ctx); }, context_);
}
void Converter::Writer::tensor(const std::string& name, const at::Tensor& t) {
  const at::Tensor cpu = t.detach().to(at::kCPU).contiguous();
  sdk::DLView view(cpu);
  throw_if_error(api_->writer_tensor(w_, name.c_str(), view.get()), context_);
}
std::string Converter::Writer::commit() {
  mh_converter_writer* w = w_;
  w_ = nullptr;  // commit frees the writer, also on error
  std::string summary;
  auto on_summary = [](void* ctx, const char* text) { *static_cast<std::string*>(ctx) = text ? text : ""; };
  throw_if_error(api_->writer_commit(w, on_summary, &summary), context_);
  return summary;
}

std::unique_ptr<Converter::Reader> Converter::open_reader(const std::string& dir, int64_t vocab_divisor) {
  mh_converter_reader_args args{};
  args.struct_size = sizeof(args);
  args.dir = dir.c_str();
  args.vocab_divisor = vocab_divisor;
  mh_converter_reader* r = nullptr;
  const std::string context = cat("converter '", id_, "'");
  throw_if_error(api_->reader_open(c_, &args, &r), context);
  return std::make_unique<Reader>(r, api_, context);
}

std::unique_ptr<Converter::Writer> Converter::open_writer(
    const std::string& dir, const ConfigSection& model, const std::string& tokenizer_model, int64_t padded_vocab,
    const std::vector<std::pair<std::string, std::string>>& blobs) {
  const ConfigTree tree(model);  // lives through writer_open: the plugin reads [model] there
  std::vector<mh_converter_blob> abi_blobs;
  for (const auto& [name, bytes] : blobs)
    abi_blobs.push_back({sizeof(mh_converter_blob), name.c_str(), bytes.data(), bytes.size()});
  mh_converter_writer_args args{};
  args.struct_size = sizeof(args);
  args.dir = dir.c_str();
  args.model = tree.root();
  args.tokenizer_model = tokenizer_model.c_str();
  args.padded_vocab = padded_vocab;
  args.blobs = abi_blobs.data();
  args.num_blobs = static_cast<uint32_t>(abi_blobs.size());
  mh_converter_writer* w = nullptr;
  const std::string context = cat("converter '", id_, "'");
  throw_if_error(api_->writer_open(c_, &args, &w), context);
  return std::make_unique<Writer>(w, api_, context);
}

std::unique_ptr<Converter> create_converter(const PluginRegistry& reg, const std::string& id) {
  return create_instance<Converter, mh_converter_factory, mh_converter, mh_converter_api>(
      reg.find(PluginKind::Converter, id), ConfigSection{}, {}, mh_converter_create_args{}, "converter");
}

}  // namespace megahost::core
