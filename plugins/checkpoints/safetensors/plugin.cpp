// safetensors — a checkpoint format plugin: each checkpoint folder is one model.safetensors
// (FORMAT.md). ABI tables over st_ckpt::Writer and Reader.
// Every entry point catches (MH_SDK_TRY/CATCH): no exception crosses the C ABI.
#include <cstring>
#include <memory>

#include "megahost/sdk/plugin.h"
#include "st_file.h"

namespace mt = megahost::st_ckpt;
using megahost::sdk::str_cat;

struct mh_checkpoint_format {
  const mh_host* host;
};
struct mh_checkpoint_writer {
  const mh_host* host;
  std::unique_ptr<mt::Writer> impl;
};
struct mh_checkpoint_reader {
  const mh_host* host;
  std::unique_ptr<mt::Reader> impl;
};

namespace {

const char* const kAliases[] = {"mh-safetensors", nullptr};
const mh_plugin_descriptor kDescriptor = {
    sizeof(mh_plugin_descriptor),
    "safetensors",
    "safetensors (model.safetensors per checkpoint folder)",
    "megahost",
    "0.1.0",
    "One model.safetensors per folder: megahost names, blobs as U8 tensors, CRC-32s in __metadata__ (FORMAT.md)",
    kAliases,
    nullptr,  // no recipe keys of its own: save/load/save_interval belong to the host
};

void MH_ABI destroy(mh_checkpoint_format* ck) { delete ck; }

mh_error* MH_ABI writer_open(mh_checkpoint_format* ck, const char* dir, mh_checkpoint_writer** out) {
  MH_SDK_TRY {
    MH_CHECK(dir != nullptr && out != nullptr, MH_ERR_INVALID_ARG, "writer_open: null folder or out");
    auto w = std::make_unique<mh_checkpoint_writer>();
    w->host = ck->host;
    w->impl = std::make_unique<mt::Writer>(dir);
    *out = w.release();
    return nullptr;
  }
  MH_SDK_CATCH(ck->host)
}

mh_error* MH_ABI writer_tensor(mh_checkpoint_writer* w, const char* name, const DLTensor* t) {
  MH_SDK_TRY {
    w->impl->tensor(name, t);
    return nullptr;
  }
  MH_SDK_CATCH(w->host)
}

mh_error* MH_ABI writer_blob(mh_checkpoint_writer* w, const char* name, const void* bytes, size_t len) {
  MH_SDK_TRY {
    w->impl->blob(name, bytes, len);
    return nullptr;
  }
  MH_SDK_CATCH(w->host)
}

mh_error* MH_ABI writer_commit(mh_checkpoint_writer* w) {
  std::unique_ptr<mh_checkpoint_writer> owned(w);  // freed also on error (a failed commit aborts)
  MH_SDK_TRY {
    owned->impl->commit();
    return nullptr;
  }
  MH_SDK_CATCH(owned->host)
}

void MH_ABI writer_abort(mh_checkpoint_writer* w) {
  if (w == nullptr) return;
  w->impl->abort();
  delete w;
}

mh_error* MH_ABI reader_open(mh_checkpoint_format* ck, const char* dir, mh_checkpoint_reader** out) {
  MH_SDK_TRY {
    MH_CHECK(dir != nullptr && out != nullptr, MH_ERR_INVALID_ARG, "reader_open: null folder or out");
    auto r = std::make_unique<mh_checkpoint_reader>();
    r->host = ck->host;
    r->impl = std::make_unique<mt::Reader>(dir);
    *out = r.release();
    return nullptr;
  }
  MH_SDK_CATCH(ck->host)
}

mh_error* MH_ABI reader_list(mh_checkpoint_reader* r, mh_checkpoint_entry_fn fn, void* ctx) {
  MH_SDK_TRY {
    for (const mt::Entry& e : r->impl->entries()) {
      mh_checkpoint_entry ce{};
      ce.struct_size = sizeof(ce);
      ce.name = e.name.c_str();
      ce.is_blob = e.is_blob ? 1 : 0;
      ce.dtype = e.dtype;
      ce.ndim = int32_t(e.shape.size());
      ce.shape = e.shape.data();
      ce.nbytes = e.end - e.begin;
      if (mh_error* err = fn(ctx, &ce)) return err;  // the visitor's error goes back unchanged
    }
    return nullptr;
  }
  MH_SDK_CATCH(r->host)
}

mh_error* MH_ABI reader_tensor(mh_checkpoint_reader* r, const char* name, DLTensor* dst) {
  MH_SDK_TRY {
    r->impl->tensor(name, dst);
    return nullptr;
  }
  MH_SDK_CATCH(r->host)
}

mh_error* MH_ABI reader_blob(mh_checkpoint_reader* r, const char* name, void* buf, size_t cap, size_t* len) {
  MH_SDK_TRY {
    MH_CHECK(len != nullptr, MH_ERR_INVALID_ARG, "reader_blob: null len");
    *len = r->impl->blob(name, buf, cap);
    return nullptr;
  }
  MH_SDK_CATCH(r->host)
}

void MH_ABI reader_close(mh_checkpoint_reader* r) { delete r; }

const void* MH_ABI get_extension(const mh_checkpoint_format*, const char*) { return nullptr; }

const mh_checkpoint_api kApi = {
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

uint32_t MH_ABI count() { return 1; }
const mh_plugin_descriptor* MH_ABI descriptor(uint32_t i) { return i == 0 ? &kDescriptor : nullptr; }

mh_error* MH_ABI create(const char* id, const mh_host* host, const mh_checkpoint_create_args* /*args*/,
                        mh_checkpoint_format** out, const mh_checkpoint_api** out_api) {
  MH_SDK_TRY {
    const mh_plugin_descriptor* descs[] = {&kDescriptor};
    MH_CHECK(id != nullptr && megahost::sdk::find_descriptor(descs, 1, id) == 0, MH_ERR_NOT_FOUND,
             "checkpoint format '", id ? id : "(null)", "' is not in this library. HINT: use \"safetensors\"");
    MH_CHECK(out != nullptr && out_api != nullptr, MH_ERR_INVALID_ARG, "create: null out");
    *out = new mh_checkpoint_format{host};
    *out_api = &kApi;
    return nullptr;
  }
  MH_SDK_CATCH(host)
}

const mh_checkpoint_factory kFactory = {MH_TABLE_HEADER(mh_checkpoint_factory), count, descriptor, create};

const void* get_factory(const char* id) {
  return std::strcmp(id, MH_FACTORY_CHECKPOINT) == 0 ? &kFactory : nullptr;
}

}  // namespace

MH_SDK_PLUGIN_ENTRY(get_factory)
