/* Test fixture: a plugin whose entry claims ABI major 2 under the v1 symbol name. The host must
 * refuse it ("wrong ABI major") without calling init. */
#define BAD_PLUGIN_ID "test-bad-abi-major"
#include "bad_plugin_common.h"

static const mh_build_fingerprint fingerprint = {sizeof(mh_build_fingerprint), 0, "", "", -1, "test fixture"};

MH_EXPORT const mh_plugin_entry_v1 megahost_plugin_v1 = {
    {(uint32_t)sizeof(mh_plugin_entry_v1), {2, 0, 0}}, /* major 2: not what this host speaks */
    &fingerprint, bad_init, bad_deinit, bad_get_factory,
};
