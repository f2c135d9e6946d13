/* Test fixture: a plugin that claims to link a libtorch no host has (0.0.0). The host must
 * refuse it ("fingerprint mismatch") without calling init: one libtorch per process. */
#define BAD_PLUGIN_ID "test-bad-fingerprint"
#include "bad_plugin_common.h"

static const mh_build_fingerprint fingerprint = {
    sizeof(mh_build_fingerprint), 1 /* links_libtorch */, "0.0.0" /* torch_version */, "" /* cuda */,
    1 /* cxx11_abi */, "test fixture",
};

MH_EXPORT const mh_plugin_entry_v1 megahost_plugin_v1 = {
    MH_TABLE_HEADER(mh_plugin_entry_v1), &fingerprint, bad_init, bad_deinit, bad_get_factory,
};
