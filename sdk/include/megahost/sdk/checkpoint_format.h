// megahost SDK — a [checkpoint] format plugin from two C++ classes. The plugin writes
//
//   class Writer {                      // one checkpoint folder being written
//    public:
//     explicit Writer(std::string dir);
//     void tensor(const char* name, const DLTensor* t);  // host memory, contiguous, borrowed
//     void blob(const char* name, const void* bytes, size_t len);
//     void commit();                    // durable and complete, or throws
//     void abort() noexcept;            // drop what was written
//   };
//   class Reader {
//    public:
//     explicit Reader(std::string dir);
//     template <class Visit> mh_error* for_each_entry(Visit&& visit) const;  // visit(const mh_checkpoint_entry&)
//     void tensor(const char* name, DLTensor* dst) const;
//     size_t blob(const char* name, void* buf, size_t cap) const;  // returns the blob's size
//   };
//
// and, in its one plugin.cpp, MH_SDK_CHECKPOINT_FORMAT_PLUGIN(kDescriptor, Writer, Reader): the C ABI
// tables (mh_checkpoint_api, the factory, the library entry) with every entry point catching, so no
// exception crosses the ABI. Errors thrown as sdk::Error keep their code and message.
#pragma once

#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "megahost/sdk/plugin.h"

namespace megahost::sdk {

// The listing record of one stored entry (borrows name and shape).
inline mh_checkpoint_entry checkpoint_entry(const std::string& name, bool is_blob, DLDataType dtype,
                                            const std::vector<int64_t>& shape, uint64_t nbytes) {
  mh_checkpoint_entry e{};
  e.struct_size = sizeof(e);
  e.name = name.c_str();
  e.is_blob = is_blob ? 1 : 0;
  e.dtype = dtype;
  e.ndim = static_cast<int32_t>(shape.size());
  e.shape = shape.data();
  e.nbytes = nbytes;
  return e;
}

}  // namespace megahost::sdk

namespace megahost::sdk::checkpoint_detail {

struct WriterBase {
  virtual ~WriterBase() = default;
  virtual void tensor(const char* name, const DLTensor* t) = 0;
  virtual void blob(const char* name, const void* bytes, size_t len) = 0;
  virtual void commit() = 0;
  virtual void abort() noexcept = 0;
};

struct ReaderBase {
  virtual ~ReaderBase() = default;
  virtual mh_error* list(mh_checkpoint_entry_fn fn, void* ctx) const = 0;
  virtual void tensor(const char* name, DLTensor* dst) const = 0;
  virtual size_t blob(const char* name, void* buf, size_t cap) const = 0;
};

template <class W>
struct WriterOf final : WriterBase {
  explicit WriterOf(std::string dir) : w(std::move(dir)) {}
  void tensor(const char* name, const DLTensor* t) override { w.tensor(name, t); }
  void blob(const char* name, const void* bytes, size_t len) override { w.blob(name, bytes, len); }
  void commit() override { w.commit(); }
  void abort() noexcept override { w.abort(); }
  W w;
};

template <class R>
struct ReaderOf final : ReaderBase {
  explicit ReaderOf(std::string dir) : r(std::move(dir)) {}
  mh_error* list(mh_checkpoint_entry_fn fn, void* ctx) const override {
    return r.for_each_entry([&](const mh_checkpoint_entry& e) { return fn(ctx, &e); });
  }
  void tensor(const char* name, DLTensor* dst) const override { r.tensor(name, dst); }
  size_t blob(const char* name, void* buf, size_t cap) const override { return r.blob(name, buf, cap); }
  R r;
};

}  // namespace megahost::sdk::checkpoint_detail

struct mh_checkpoint_format {
  const mh_host* host;
  std::unique_ptr<megahost::sdk::checkpoint_detail::WriterBase> (*open_writer)(std::string dir);
  std::unique_ptr<megahost::sdk::checkpoint_detail::ReaderBase> (*open_reader)(std::string dir);
};
struct mh_checkpoint_writer {
  const mh_host* host;
  std::unique_ptr<megahost::sdk::checkpoint_detail::WriterBase> impl;
};
struct mh_checkpoint_reader {
  const mh_host* host;
  std::unique_ptr<megahost::sdk::checkpoint_detail::ReaderBase> impl;
};

namespace megahost::sdk::checkpoint_detail {

inline void MH_ABI destroy(mh_checkpoint_format* ck) { delete ck; }

inline mh_error* MH_ABI writer_open(mh_checkpoint_format* ck, const char* dir, mh_checkpoint_writer** out) {
  MH_SDK_TRY {
    MH_CHECK(dir != nullptr && out != nullptr, MH_ERR_INVALID_ARG, "writer_open: null folder or out");
    auto w = std::make_unique<mh_checkpoint_writer>();
    w->host = ck->host;
    w->impl = ck->open_writer(dir);
    *out = w.release();
    return nullptr;
  }
  MH_SDK_CATCH(ck->host)
}

inline mh_error* MH_ABI writer_tensor(mh_checkpoint_writer* w, const char* name, const DLTensor* t) {
  MH_SDK_TRY {
    w->impl->tensor(name, t);
    return nullptr;
  }
  MH_SDK_CATCH(w->host)
}

inline mh_error* MH_ABI writer_blob(mh_checkpoint_writer* w, const char* name, const void* bytes, size_t len) {
  MH_SDK_TRY {
    w->impl->blob(name, bytes, len);
    return nullptr;
  }
  MH_SDK_CATCH(w->host)
}

inline mh_error* MH_ABI writer_commit(mh_checkpoint_writer* w) {
  std::unique_ptr<mh_checkpoint_writer> owned(w);  // freed also on error (a failed commit aborts)
  MH_SDK_TRY {
    owned->impl->commit();
    return nullptr;
  }
  MH_SDK_CATCH(owned->host)
}

inline void MH_ABI writer_abort(mh_checkpoint_writer* w) {
  if (w == nullptr) return;
  w->impl->abort();
  delete w;
}

inline mh_error* MH_ABI reader_open(mh_checkpoint_format* ck, const char* dir, mh_checkpoint_reader** out) {
  MH_SDK_TRY {
    MH_CHECK(dir != nullptr && out != nullptr, MH_ERR_INVALID_ARG, "reader_open: null folder or out");
    auto r = std::make_unique<mh_checkpoint_reader>();
    r->host = ck->host;
    r->impl = ck->open_reader(dir);
    *out = r.release();
    return nullptr;
  }
  MH_SDK_CATCH(ck->host)
}

inline mh_error* MH_ABI reader_list(mh_checkpoint_reader* r, mh_checkpoint_entry_fn fn, void* ctx) {
  MH_SDK_TRY { return r->impl->list(fn, ctx); }  // the visitor's error goes back unchanged
  MH_SDK_CATCH(r->host)
}

inline mh_error* MH_ABI reader_tensor(mh_checkpoint_reader* r, const char* name, DLTensor* dst) {
  MH_SDK_TRY {
    r->impl->tensor(name, dst);
    return nullptr;
  }
  MH_SDK_CATCH(r->host)
}

inline mh_error* MH_ABI reader_blob(mh_checkpoint_reader* r, const char* name, void* buf, size_t cap, size_t* len) {
  MH_SDK_TRY {
    MH_CHECK(len != nullptr, MH_ERR_INVALID_ARG, "reader_blob: null len");
    *len = r->impl->blob(name, buf, cap);
    return nullptr;
  }
  MH_SDK_CATCH(r->host)
}

inline void MH_ABI reader_close(mh_checkpoint_reader* r) { delete r; }

inline const void* MH_ABI get_extension(const mh_checkpoint_format*, const char*) { return nullptr; }

inline const mh_checkpoint_api kApi = {
    MH_TABLE_HEADER(mh_checkpoint_api),
    destroy,
    writer_open,
    writer_tensor,
    writer_blob,
    writer_commit,
    writer_abort,
    reader_open,
    reader_list,
    reader_tensor,
    reader_blob,
    reader_close,
    get_extension,
};

// The format instance create() hands out for W / R; id must name `desc` (or an alias).
template <class W, class R>
mh_error* create(const mh_plugin_descriptor& desc, const char* id, const mh_host* host, mh_checkpoint_format** out,
                 const mh_checkpoint_api** out_api) {
  MH_SDK_TRY {
    const mh_plugin_descriptor* descs[] = {&desc};
    MH_CHECK(id != nullptr && find_descriptor(descs, 1, id) == 0, MH_ERR_NOT_FOUND, "checkpoint format '",
             id ? id : "(null)", "' is not in this library. HINT: use \"", desc.id, "\"");
    MH_CHECK(out != nullptr && out_api != nullptr, MH_ERR_INVALID_ARG, "create: null out");
    *out = new mh_checkpoint_format{
        host, [](std::string dir) -> std::unique_ptr<WriterBase> { return std::make_unique<WriterOf<W>>(std::move(dir)); },
        [](std::string dir) -> std::unique_ptr<ReaderBase> { return std::make_unique<ReaderOf<R>>(std::move(dir)); }};
    *out_api = &kApi;
    return nullptr;
  }
  MH_SDK_CATCH(host)
}

}  // namespace megahost::sdk::checkpoint_detail

// One checkpoint format per library: descriptor (an mh_plugin_descriptor), WriterType, ReaderType.
#define MH_SDK_CHECKPOINT_FORMAT_PLUGIN(descriptor, WriterType, ReaderType)                                       \
  namespace {                                                                                                      \
  uint32_t MH_ABI mh_sdk_ckpt_count() { return 1; }                                                               \
  const mh_plugin_descriptor* MH_ABI mh_sdk_ckpt_descriptor(uint32_t i) { return i == 0 ? &(descriptor) : nullptr; } \
  mh_error* MH_ABI mh_sdk_ckpt_create(const char* id, const mh_host* host, const mh_checkpoint_create_args*,       \
                                      mh_checkpoint_format** out, const mh_checkpoint_api** out_api) {            \
    return megahost::sdk::checkpoint_detail::create<WriterType, ReaderType>(descriptor, id, host, out, out_api);   \
  }                                                                                                                \
  const mh_checkpoint_factory mh_sdk_ckpt_factory = {MH_TABLE_HEADER(mh_checkpoint_factory), mh_sdk_ckpt_count,    \
                                                     mh_sdk_ckpt_descriptor, mh_sdk_ckpt_create};                 \
  const void* mh_sdk_ckpt_get_factory(const char* id) {                                                            \
    return std::strcmp(id, MH_FACTORY_CHECKPOINT) == 0 ? &mh_sdk_ckpt_factory : nullptr;                           \
  }                                                                                                                \
  }                                                                                                                \
  MH_SDK_PLUGIN_ENTRY(mh_sdk_ckpt_get_factory)
