// The C bridge to libsentencepiece (spm_shim.h). No exception leaves this file.
#include "spm_shim.h"

#include <sentencepiece_processor.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

namespace {

using Processor = sentencepiece::SentencePieceProcessor;
const Processor* as_sp(const mh_spm_model* m) { return reinterpret_cast<const Processor*>(m); }

void write_err(char* err, size_t cap, const std::string& msg) {
  if (err == nullptr || cap == 0) return;
  const size_t n = std::min(cap - 1, msg.size());
  std::memcpy(err, msg.data(), n);
  err[n] = '\0';
}

mh_spm_model* load(const char* path, char* err, size_t err_cap) {
  try {
    auto sp = std::make_unique<Processor>();
    const auto status = sp->Load(path);
    if (!status.ok()) {
      write_err(err, err_cap, status.ToString());
      return nullptr;
    }
    return reinterpret_cast<mh_spm_model*>(sp.release());
  } catch (const std::exception& e) {
    write_err(err, err_cap, e.what());
  } catch (...) {
    write_err(err, err_cap, "unknown exception in sentencepiece");
  }
  return nullptr;
}

void free_model(mh_spm_model* m) { delete reinterpret_cast<Processor*>(m); }

int32_t piece_size(const mh_spm_model* m) { return as_sp(m)->GetPieceSize(); }

int32_t special_id(const mh_spm_model* m, char which) {
  switch (which) {
    case 'u': return as_sp(m)->unk_id();
    case 'b': return as_sp(m)->bos_id();
    case 'e': return as_sp(m)->eos_id();
    case 'p': return as_sp(m)->pad_id();
    default: return -1;
  }
}

void id_to_piece(const mh_spm_model* m, int32_t id, mh_spm_bytes_sink sink, void* ctx) {
  const std::string& piece = as_sp(m)->IdToPiece(id);
  sink(ctx, piece.data(), piece.size());
}

int encode(const mh_spm_model* m, const char* text, size_t len, mh_spm_ids_sink sink, void* ctx, char* err,
           size_t err_cap) {
  try {
    thread_local std::vector<int> ids;  // int is int32_t on every platform megahost builds on
    ids.clear();
    const auto status = as_sp(m)->Encode(std::string_view(text, len), &ids);
    if (!status.ok()) {
      write_err(err, err_cap, status.ToString());
      return 1;
    }
    sink(ctx, reinterpret_cast<const int32_t*>(ids.data()), ids.size());
    return 0;
  } catch (const std::exception& e) {
    write_err(err, err_cap, e.what());
  } catch (...) {
    write_err(err, err_cap, "unknown exception in sentencepiece");
  }
  return 1;
}

int decode(const mh_spm_model* m, const int32_t* ids, size_t n, mh_spm_bytes_sink sink, void* ctx, char* err,
           size_t err_cap) {
  try {
    thread_local std::vector<int> buf;
    thread_local std::string text;
    buf.assign(ids, ids + n);
    text.clear();
    const auto status = as_sp(m)->Decode(buf, &text);
    if (!status.ok()) {
      write_err(err, err_cap, status.ToString());
      return 1;
    }
    sink(ctx, text.data(), text.size());
    return 0;
  } catch (const std::exception& e) {
    write_err(err, err_cap, e.what());
  } catch (...) {
    write_err(err, err_cap, "unknown exception in sentencepiece");
  }
  return 1;
}

const mh_spm_shim_api kApi = {
    sizeof(mh_spm_shim_api), load, free_model, piece_size, special_id, id_to_piece, encode, decode,
};

}  // namespace

extern "C" __attribute__((visibility("default"))) const mh_spm_shim_api* megahost_spm_shim_v1(void) { return &kApi; }
