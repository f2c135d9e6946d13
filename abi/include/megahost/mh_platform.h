/* megahost ABI — platform macros and the standard C headers every ABI header needs.
 *
 * Part of ABI v1. C11 and C++17 clean under -Wall -Wextra -pedantic -Werror.
 */
#ifndef MEGAHOST_MH_PLATFORM_H
#define MEGAHOST_MH_PLATFORM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Calling convention of every function pointer in the ABI (cdecl everywhere we build). */
#if defined(_WIN32)
#define MH_ABI __cdecl
#else
#define MH_ABI
#endif

/* Marks the one symbol a plugin library exports. */
#if defined(_WIN32)
#define MH_EXPORT __declspec(dllexport)
#else
#define MH_EXPORT __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
#define MH_EXTERN_C_BEGIN extern "C" {
#define MH_EXTERN_C_END }
#else
#define MH_EXTERN_C_BEGIN
#define MH_EXTERN_C_END
#endif

#endif /* MEGAHOST_MH_PLATFORM_H */
