// safetensors — a checkpoint format plugin: each checkpoint folder is one model.safetensors
// (FORMAT.md). The C ABI tables come from megahost/sdk/checkpoint_format.h over
// st_ckpt::Writer and Reader.
#include "megahost/sdk/checkpoint_format.h"
#include "st_file.h"

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

}  // namespace

MH_SDK_CHECKPOINT_FORMAT_PLUGIN(kDescriptor, megahost::st_ckpt::Writer, megahost::st_ckpt::Reader)
