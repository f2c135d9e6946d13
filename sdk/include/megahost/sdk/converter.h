// megahost SDK — a converter plugin (`megahost convert --loader/--saver <id>`) from two C++
// classes. The plugin writes
//
//   class Reader {                       // a foreign folder -> megahost
//    public:
//     Reader(const mh_host* host, const mh_converter_reader_args& args);  // reads metadata, checks names
//     std::string recipe_toml() const;   // "[model]\n..." (+ "[tokenizer]\n...")
//     std::string summary() const;       // one line
//     std::vector<sdk::ConvertRule> plan() const;   // every rule's foreign tensors checked
//     void tensor(const char* name, DLTensor* dst) const;
//     std::vector<std::pair<std::string, std::string>> blobs() const;  // kept for the way back
//   };
//   class Writer {                       // megahost -> a foreign folder
//    public:
//     Writer(const mh_host* host, const mh_converter_writer_args& args);  // args->model: sdk::Config
//     std::vector<sdk::ConvertRule> plan() const;
//     void tensor(const char* name, const DLTensor* t);  // in the plan's order
//     std::string commit();              // returns a one-line summary
//     void abort() noexcept;             // drop what was written
//   };
//
// and, in its plugin.cpp, MH_SDK_CONVERTER_PLUGIN(kDescriptor, Reader, Writer): the C ABI tables
// (mh_converter_api, the factory, the library entry) with every entry point catching, so no
// exception crosses the ABI. Errors thrown as sdk::Error keep their code and message.
#pragma once

#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "megahost/sdk/dl_shape.h"
#include "megahost/sdk/plugin.h"

namespace megahost::sdk {

// One foreign tensor of a rule, and the rule (mh_converter_rule without borrowed pointers).
struct ForeignTensor {
  std::string name;
  DLDataType dtype{kDLFloat, 32, 1};
  std::vector<int64_t> shape;
};
struct ConvertRule {
  std::string param;  // the gpt plugin's parameter name, without "model/"
  int32_t step = MH_CONVERT_STEP_COPY;
  std::vector<int64_t> shape;  // megahost global shape
  std::vector<ForeignTensor> foreign;
};

}  // namespace megahost::sdk

namespace megahost::sdk::converter_detail {

struct ReaderBase {
  virtual ~ReaderBase() = default;
  std::string recipe_toml, summary;  // kept for reader_info's borrowed strings
  virtual std::vector<ConvertRule> plan() const = 0;
  virtual void tensor(const char* name, DLTensor* dst) const = 0;
  virtual std::vector<std::pair<std::string, std::string>> blobs() const = 0;
};
struct WriterBase {
  virtual ~WriterBase() = default;
  virtual std::vector<ConvertRule> plan() const = 0;
  virtual void tensor(const char* name, const DLTensor* t) = 0;
  virtual std::string commit() = 0;
  virtual void abort() noexcept = 0;
};

template <class R>
struct ReaderOf final : ReaderBase {
  ReaderOf(const mh_host* host, const mh_converter_reader_args& args) : r(host, args) {
    recipe_toml = r.recipe_toml();
    summary = r.summary();
  }
  std::vector<ConvertRule> plan() const override { return r.plan(); }
  void tensor(const char* name, DLTensor* dst) const override { r.tensor(name, dst); }
  std::vector<std::pair<std::string, std::string>> blobs() const override { return r.blobs(); }
  R r;
};
template <class W>
struct WriterOf final : WriterBase {
  WriterOf(const mh_host* host, const mh_converter_writer_args& args) : w(host, args) {}
  std::vector<ConvertRule> plan() const override { return w.plan(); }
  void tensor(const char* name, const DLTensor* t) override { w.tensor(name, t); }
  std::string commit() override { return w.commit(); }
  void abort() noexcept override { w.abort(); }
  W w;
};

}  // namespace megahost::sdk::converter_detail

struct mh_converter {
  const mh_host* host;
  std::unique_ptr<megahost::sdk::converter_detail::ReaderBase> (*open_reader)(const mh_host*,
                                                                              const mh_converter_reader_args&);
  std::unique_ptr<megahost::sdk::converter_detail::WriterBase> (*open_writer)(const mh_host*,
                                                                              const mh_converter_writer_args&);
};
struct mh_converter_reader {
  const mh_host* host;
  std::unique_ptr<megahost::sdk::converter_detail::ReaderBase> impl;
};
struct mh_converter_writer {
  const mh_host* host;
  std::unique_ptr<megahost::sdk::converter_detail::WriterBase> impl;
};

namespace megahost::sdk::converter_detail {

// Hands each rule to fn as the borrowed ABI struct; the visitor's error goes back unchanged.
inline mh_error* visit_rules(const std::vector<ConvertRule>& rules, mh_converter_rule_fn fn, void* ctx) {
  for (const ConvertRule& r : rules) {
    std::vector<mh_converter_tensor> foreign;
    for (const ForeignTensor& f : r.foreign)
      foreign.push_back({sizeof(mh_converter_tensor), f.name.c_str(), f.dtype, static_cast<int32_t>(f.shape.size()),
                         f.shape.data()});
    const mh_converter_rule rule = {sizeof(mh_converter_rule), r.param.c_str(), r.step,
                                    static_cast<int32_t>(r.shape.size()), r.shape.data(),
                                    static_cast<uint32_t>(foreign.size()), foreign.data()};
    if (mh_error* err = fn(ctx, &rule)) return err;
  }
  return nullptr;
}

inline void MH_ABI destroy(mh_converter* c) { delete c; }

inline mh_error* MH_ABI reader_open(mh_converter* c, const mh_converter_reader_args* args, mh_converter_reader** out) {
  MH_SDK_TRY {
    MH_CHECK(args != nullptr && args->dir != nullptr && out != nullptr, MH_ERR_INVALID_ARG,
             "reader_open: null args, folder or out");
    auto r = std::make_unique<mh_converter_reader>();
    r->host = c->host;
    r->impl = c->open_reader(c->host, *args);
    *out = r.release();
    return nullptr;
  }
  MH_SDK_CATCH(c->host)
}

inline mh_error* MH_ABI reader_info(mh_converter_reader* r, mh_converter_source_info* out) {
  MH_SDK_TRY {
    MH_CHECK(out != nullptr && out->struct_size >= sizeof(mh_converter_source_info), MH_ERR_INVALID_ARG,
             "reader_info: null or too small out");
    out->recipe_toml = r->impl->recipe_toml.c_str();
    out->summary = r->impl->summary.c_str();
    return nullptr;
  }
  MH_SDK_CATCH(r->host)
}

inline mh_error* MH_ABI reader_plan(mh_converter_reader* r, mh_converter_rule_fn fn, void* ctx) {
  MH_SDK_TRY { return visit_rules(r->impl->plan(), fn, ctx); }
  MH_SDK_CATCH(r->host)
}

inline mh_error* MH_ABI reader_tensor(mh_converter_reader* r, const char* name, DLTensor* dst) {
  MH_SDK_TRY {
    MH_CHECK(name != nullptr && dst != nullptr, MH_ERR_INVALID_ARG, "reader_tensor: null name or dst");
    r->impl->tensor(name, dst);
    return nullptr;
  }
  MH_SDK_CATCH(r->host)
}

inline mh_error* MH_ABI reader_blobs(mh_converter_reader* r, mh_converter_blob_fn fn, void* ctx) {
  MH_SDK_TRY {
    for (const auto& [name, bytes] : r->impl->blobs()) {
      const mh_converter_blob b = {sizeof(mh_converter_blob), name.c_str(), bytes.data(), bytes.size()};
      if (mh_error* err = fn(ctx, &b)) return err;
    }
    return nullptr;
  }
  MH_SDK_CATCH(r->host)
}

inline void MH_ABI reader_close(mh_converter_reader* r) { delete r; }

inline mh_error* MH_ABI writer_open(mh_converter* c, const mh_converter_writer_args* args, mh_converter_writer** out) {
  MH_SDK_TRY {
    MH_CHECK(args != nullptr && args->dir != nullptr && args->model != nullptr && out != nullptr, MH_ERR_INVALID_ARG,
             "writer_open: null args, folder, model table or out");
    auto w = std::make_unique<mh_converter_writer>();
    w->host = c->host;
    w->impl = c->open_writer(c->host, *args);
    *out = w.release();
    return nullptr;
  }
  MH_SDK_CATCH(c->host)
}

inline mh_error* MH_ABI writer_plan(mh_converter_writer* w, mh_converter_rule_fn fn, void* ctx) {
  MH_SDK_TRY { return visit_rules(w->impl->plan(), fn, ctx); }
  MH_SDK_CATCH(w->host)
}

inline mh_error* MH_ABI writer_tensor(mh_converter_writer* w, const char* name, const DLTensor* t) {
  MH_SDK_TRY {
    MH_CHECK(name != nullptr && t != nullptr, MH_ERR_INVALID_ARG, "writer_tensor: null name or tensor");
    w->impl->tensor(name, t);
    return nullptr;
  }
  MH_SDK_CATCH(w->host)
}

inline mh_error* MH_ABI writer_commit(mh_converter_writer* w, mh_converter_text_fn summary, void* ctx) {
  std::unique_ptr<mh_converter_writer> owned(w);  // freed also on error
  MH_SDK_TRY {
    const std::string text = owned->impl->commit();
    if (summary != nullptr) summary(ctx, text.c_str());
    return nullptr;
  }
  MH_SDK_CATCH(owned->host)
}

inline void MH_ABI writer_abort(mh_converter_writer* w) {
  if (w == nullptr) return;
  w->impl->abort();
  delete w;
}

inline const void* MH_ABI get_extension(const mh_converter*, const char*) { return nullptr; }

inline const mh_converter_api kApi = {
    MH_TABLE_HEADER(mh_converter_api),
    destroy,
    reader_open,
    reader_info,
    reader_plan,
    reader_tensor,
    reader_blobs,
    reader_close,
    writer_open,
    writer_plan,
    writer_tensor,
    writer_commit,
    writer_abort,
    get_extension,
};

template <class R, class W>
mh_error* create(const mh_plugin_descriptor& desc, const char* id, const mh_host* host, mh_converter** out,
                 const mh_converter_api** out_api) {
  MH_SDK_TRY {
    const mh_plugin_descriptor* descs[] = {&desc};
    MH_CHECK(id != nullptr && find_descriptor(descs, 1, id) == 0, MH_ERR_NOT_FOUND, "converter '",
             id ? id : "(null)", "' is not in this library. HINT: use \"", desc.id, "\"");
    MH_CHECK(out != nullptr && out_api != nullptr, MH_ERR_INVALID_ARG, "create: null out");
    *out = new mh_converter{host,
                            [](const mh_host* h, const mh_converter_reader_args& a) -> std::unique_ptr<ReaderBase> {
                              return std::make_unique<ReaderOf<R>>(h, a);
                            },
                            [](const mh_host* h, const mh_converter_writer_args& a) -> std::unique_ptr<WriterBase> {
                              return std::make_unique<WriterOf<W>>(h, a);
                            }};
    *out_api = &kApi;
    return nullptr;
  }
  MH_SDK_CATCH(host)
}

}  // namespace megahost::sdk::converter_detail

// One converter per library: descriptor (an mh_plugin_descriptor), ReaderType, WriterType.
#define MH_SDK_CONVERTER_PLUGIN(descriptor, ReaderType, WriterType)                                                 \
  namespace {                                                                                                        \
  uint32_t MH_ABI mh_sdk_conv_count() { return 1; }                                                                 \
  const mh_plugin_descriptor* MH_ABI mh_sdk_conv_descriptor(uint32_t i) { return i == 0 ? &(descriptor) : nullptr; } \
  mh_error* MH_ABI mh_sdk_conv_create(const char* id, const mh_host* host, const mh_converter_create_args*,         \
                                      mh_converter** out, const mh_converter_api** out_api) {                       \
    return megahost::sdk::converter_detail::create<ReaderType, WriterType>(descriptor, id, host, out, out_api);      \
  }                                                                                                                  \
  const mh_converter_factory mh_sdk_conv_factory = {MH_TABLE_HEADER(mh_converter_factory), mh_sdk_conv_count,        \
                                                    mh_sdk_conv_descriptor, mh_sdk_conv_create};                    \
  const void* mh_sdk_conv_get_factory(const char* id) {                                                              \
    return std::strcmp(id, MH_FACTORY_CONVERTER) == 0 ? &mh_sdk_conv_factory : nullptr;                             \
  }                                                                                                                  \
  }                                                                                                                  \
  MH_SDK_PLUGIN_ENTRY(mh_sdk_conv_get_factory)
