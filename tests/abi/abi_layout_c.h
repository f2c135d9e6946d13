/* One frozen layout value and what the C compiler measures for it (abi_layout_c.c). */
#pragma once
#ifndef MEGAHOST_TESTS_ABI_LAYOUT_C_H
#define MEGAHOST_TESTS_ABI_LAYOUT_C_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mh_abi_layout_entry {
  const char* type;   /* e.g. "mh_host" */
  const char* member; /* "" for the struct's sizeof */
  size_t frozen;      /* the value in abi_layout_v1_0.inc */
  size_t measured;    /* sizeof / offsetof as compiled by C */
} mh_abi_layout_entry;

extern const mh_abi_layout_entry mh_abi_layout_c[];
extern const size_t mh_abi_layout_c_count;

#ifdef __cplusplus
}
#endif

#endif /* MEGAHOST_TESTS_ABI_LAYOUT_C_H */
