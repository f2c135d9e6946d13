/* ABI v1.0 layout, checked by the C compiler: every sizeof/offsetof in abi_layout_v1_0.inc is a
 * _Static_assert, so a layout change fails the build. The same values, as measured by C, are
 * exported for abi_layout_test.cpp, which compares them with C++'s view of the same headers. */
#include <stddef.h>

#include "abi_layout_c.h"
#include "megahost/megahost.h"

#if defined(__x86_64__) && defined(__LP64__)
#define MH_LAYOUT_SIZE(T, n) _Static_assert(sizeof(T) == (n), "sizeof(" #T ") differs from frozen ABI v1.11");
#define MH_LAYOUT_FIELD(T, f, off) \
  _Static_assert(offsetof(T, f) == (off), "offsetof(" #T ", " #f ") differs from frozen ABI v1.11");
#include "abi_layout_v1_11.inc"
#undef MH_LAYOUT_SIZE
#undef MH_LAYOUT_FIELD
#endif

#define MH_LAYOUT_SIZE(T, n) {#T, "", (size_t)(n), sizeof(T)},
#define MH_LAYOUT_FIELD(T, f, off) {#T, #f, (size_t)(off), offsetof(T, f)},
const mh_abi_layout_entry mh_abi_layout_c[] = {
#include "abi_layout_v1_11.inc"
};
#undef MH_LAYOUT_SIZE
#undef MH_LAYOUT_FIELD

const size_t mh_abi_layout_c_count = sizeof(mh_abi_layout_c) / sizeof(mh_abi_layout_c[0]);
