// mmap-indexed — the C ABI face of the format ("mh.dataset/1"): Megatron's PREFIX.bin/.idx.
// Every entry point catches all exceptions (MH_SDK_TRY / MH_SDK_CATCH) and returns mh_error*.
#include <algorithm>
#include <cstring>
#include <memory>
#include <new>

#include "megahost/megahost.h"
#include "megahost/sdk/error.h"
#include "megahost/sdk/host.h"
#include "megahost/sdk/plugin.h"
#include "mmidx_reader.h"
#include "mmidx_writer.h"

using megahost::sdk::Error;
using megahost::sdk::str_cat;

// The opaque ABI handles, defined here.
struct mh_dataset_format {
  const mh_host* host;
};
struct mh_dataset_reader {
  const mh_host* host;
  mmidx::Reader impl;
};
struct mh_dataset_writer {
  const mh_host* host;
  mmidx::Writer impl;
};

namespace {

template <typename Handle>
const mh_host* host_of(const Handle* h) {
  return h != nullptr ? h->host : megahost::sdk::library_host();
}

void require(const void* p, const char* what) {
  if (p == nullptr) throw Error(MH_ERR_INVALID_ARG, str_cat(what, " is NULL"));
}

void MH_ABI fmt_destroy(mh_dataset_format* fmt) { delete fmt; }

mh_error* MH_ABI fmt_open_reader(mh_dataset_format* fmt, const char* path_prefix,
                                 mh_dataset_reader** out) {
  MH_SDK_TRY {
    require(fmt, "format");
    require(path_prefix, "path_prefix");
    require(out, "out");
    *out = new mh_dataset_reader{fmt->host, mmidx::Reader(path_prefix)};
    return nullptr;
  }
  MH_SDK_CATCH(host_of(fmt))
}

mh_error* MH_ABI reader_info(const mh_dataset_reader* r, mh_dataset_info* out) {
  MH_SDK_TRY {
    require(r, "reader");
    require(out, "out");
    if (out->struct_size < sizeof(uint32_t))
      throw Error(MH_ERR_INVALID_ARG, "mh_dataset_info.struct_size not set");
    mh_dataset_info info{};
    info.struct_size = out->struct_size;
    info.num_sequences = r->impl.num_sequences();
    info.num_documents = r->impl.num_doc_entries() - 1;
    info.num_tokens = r->impl.num_tokens();
    info.dtype = r->impl.dtype();
    // Fill only what the caller's struct has room for.
    std::memcpy(out, &info, std::min<size_t>(out->struct_size, sizeof(info)));
    return nullptr;
  }
  MH_SDK_CATCH(host_of(r))
}

mh_error* MH_ABI reader_sequence_lengths(const mh_dataset_reader* r, uint64_t first,
                                         uint64_t count, int32_t* out) {
  MH_SDK_TRY {
    require(r, "reader");
    if (count > 0) require(out, "out");
    r->impl.copy_sequence_lengths(first, count, out);
    return nullptr;
  }
  MH_SDK_CATCH(host_of(r))
}

mh_error* MH_ABI reader_document_indices(const mh_dataset_reader* r, uint64_t first,
                                         uint64_t count, int64_t* out) {
  MH_SDK_TRY {
    require(r, "reader");
    if (count > 0) require(out, "out");
    r->impl.copy_document_indices(first, count, out);
    return nullptr;
  }
  MH_SDK_CATCH(host_of(r))
}

mh_error* MH_ABI reader_read(const mh_dataset_reader* r, uint64_t seq, uint64_t offset,
                             uint64_t count, int64_t* out) {
  MH_SDK_TRY {
    require(r, "reader");
    if (count > 0) require(out, "out");
    r->impl.read_tokens(seq, offset, count, out);
    return nullptr;
  }
  MH_SDK_CATCH(host_of(r))
}

void MH_ABI reader_close(mh_dataset_reader* r) { delete r; }

mh_error* MH_ABI fmt_open_writer(mh_dataset_format* fmt, const char* path_prefix,
                                 mh_token_dtype dtype, mh_dataset_writer** out) {
  MH_SDK_TRY {
    require(fmt, "format");
    require(path_prefix, "path_prefix");
    require(out, "out");
    *out = new mh_dataset_writer{fmt->host, mmidx::Writer(path_prefix, dtype)};
    return nullptr;
  }
  MH_SDK_CATCH(host_of(fmt))
}

mh_error* MH_ABI writer_add_sequence(mh_dataset_writer* w, const int32_t* tokens, size_t n) {
  MH_SDK_TRY {
    require(w, "writer");
    w->impl.add_sequence(tokens, n);
    return nullptr;
  }
  MH_SDK_CATCH(host_of(w))
}

mh_error* MH_ABI writer_end_document(mh_dataset_writer* w) {
  MH_SDK_TRY {
    require(w, "writer");
    w->impl.end_document();
    return nullptr;
  }
  MH_SDK_CATCH(host_of(w))
}

mh_error* MH_ABI writer_add_dataset(mh_dataset_writer* w, const char* other_prefix) {
  MH_SDK_TRY {
    require(w, "writer");
    require(other_prefix, "other_prefix");
    w->impl.add_dataset(other_prefix);
    return nullptr;
  }
  MH_SDK_CATCH(host_of(w))
}

mh_error* MH_ABI writer_finalize(mh_dataset_writer* w) {
  // Frees w on success and on error; the destructor removes temporaries after a failure.
  std::unique_ptr<mh_dataset_writer> owned(w);
  const mh_host* host = host_of(w);
  MH_SDK_TRY {
    require(w, "writer");
    owned->impl.finalize();
    return nullptr;
  }
  MH_SDK_CATCH(host)
}

void MH_ABI writer_abort(mh_dataset_writer* w) { delete w; }

const void* MH_ABI fmt_get_extension(const mh_dataset_format*, const char*) { return nullptr; }

const mh_dataset_api kApi = {
    MH_TABLE_HEADER(mh_dataset_api),
    fmt_destroy,
    fmt_open_reader,
    reader_info,
    reader_sequence_lengths,
    reader_document_indices,
    reader_read,
    reader_close,
    fmt_open_writer,
    writer_add_sequence,
    writer_end_document,
    writer_add_dataset,
    writer_finalize,
    writer_abort,
    fmt_get_extension,
};

const char* const kAliases[] = {"mmap", "MMapIndexedDataset", nullptr};

const mh_plugin_descriptor kDescriptor = {
    sizeof(mh_plugin_descriptor),
    "mmap-indexed",
    "Megatron mmap indexed dataset",
    "megahost",
    "0.1.0",
    "Megatron-LM's PREFIX.bin + PREFIX.idx token files: validated mmap reader, atomic writer, "
    "shard merging",
    kAliases,
    "{}",  // no keys of its own: data_path, split, ... belong to the host
};
const mh_plugin_descriptor* const kDescriptors[] = {&kDescriptor};

uint32_t MH_ABI factory_count(void) { return 1; }

const mh_plugin_descriptor* MH_ABI factory_descriptor(uint32_t i) {
  return i == 0 ? &kDescriptor : nullptr;
}

mh_error* MH_ABI factory_create(const char* id, const mh_host* host,
                                const mh_dataset_create_args* /*args*/, mh_dataset_format** out,
                                const mh_dataset_api** out_api) {
  const mh_host* h = host != nullptr ? host : megahost::sdk::library_host();
  MH_SDK_TRY {
    require(id, "id");
    require(out, "out");
    require(out_api, "out_api");
    if (megahost::sdk::find_descriptor(kDescriptors, 1, id) < 0)
      throw Error(MH_ERR_NOT_FOUND, str_cat("no dataset format \"", id, "\" in this library; "
                                            "HINT: it provides \"mmap-indexed\" (aliases "
                                            "\"mmap\", \"MMapIndexedDataset\")"));
    *out = new mh_dataset_format{h};
    *out_api = &kApi;
    return nullptr;
  }
  MH_SDK_CATCH(h)
}

const mh_dataset_factory kFactory = {
    MH_TABLE_HEADER(mh_dataset_factory),
    factory_count,
    factory_descriptor,
    factory_create,
};

const void* get_factory(const char* id) {
  if (std::strcmp(id, MH_FACTORY_DATASET) == 0) return &kFactory;
  return nullptr;
}

}  // namespace

MH_SDK_PLUGIN_ENTRY(get_factory)
