// megahost-tensors — the checkpoint format plugin: the C ABI tables come from
// megahost/sdk/checkpoint_format.h over Writer and Reader.
#include "megahost/sdk/checkpoint_format.h"
#include "reader.h"
#include "writer.h"

namespace {

const char* const kAliases[] = {"mh-tensors", nullptr};
const mh_plugin_descriptor kDescriptor = {
    sizeof(mh_plugin_descriptor),
    "megahost-tensors",
    "megahost tensors (tensors.bin + index.json)",
    "megahost",
    "0.1.0",
    "One folder per checkpoint: 64-byte aligned payloads with CRC-32 and a JSON index (FORMAT.md)",
    kAliases,
    nullptr,  // no recipe keys of its own: save/load/save_interval belong to the host
};

}  // namespace

MH_SDK_CHECKPOINT_FORMAT_PLUGIN(kDescriptor, megahost::mh_tensors::Writer, megahost::mh_tensors::Reader)
