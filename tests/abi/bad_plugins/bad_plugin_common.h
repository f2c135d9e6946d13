/* Shared body of the deliberately broken test plugins: a tokenizer factory that must never be
 * reached, because the host refuses the library before asking for factories. If a loader
 * does use it, create fails loudly and names the fixture. */
#pragma once
#ifndef MEGAHOST_TESTS_BAD_PLUGIN_COMMON_H
#define MEGAHOST_TESTS_BAD_PLUGIN_COMMON_H

#include <string.h>

#include "megahost/megahost.h"

static const char* const bad_aliases[] = {NULL};

static const mh_plugin_descriptor bad_descriptor = {
    sizeof(mh_plugin_descriptor), BAD_PLUGIN_ID, "must be refused", "megahost tests", "0.0.0",
    "a test fixture the host must refuse at load", bad_aliases, "{}",
};

static uint32_t MH_ABI bad_count(void) { return 1; }
static const mh_plugin_descriptor* MH_ABI bad_descriptor_at(uint32_t i) { return i == 0 ? &bad_descriptor : NULL; }
static mh_error* MH_ABI bad_create(const char* id, const mh_host* host, const mh_tokenizer_create_args* args,
                                   mh_tokenizer** out, const mh_tokenizer_api** out_api) {
  (void)id;
  (void)args;
  (void)out;
  (void)out_api;
  return host->error_new(host, MH_ERR_INTERNAL, BAD_PLUGIN_ID ": the host should have refused this library");
}

static const mh_tokenizer_factory bad_factory = {
    MH_TABLE_HEADER(mh_tokenizer_factory), bad_count, bad_descriptor_at, bad_create,
};

static mh_error* MH_ABI bad_init(const mh_host* host, const char* library_path) {
  (void)library_path;
  return host->error_new(host, MH_ERR_INTERNAL, BAD_PLUGIN_ID ": init must not be called on a refused library");
}
static void MH_ABI bad_deinit(void) {}
static const void* MH_ABI bad_get_factory(const char* factory_id) {
  return (factory_id != NULL && strcmp(factory_id, MH_FACTORY_TOKENIZER) == 0) ? &bad_factory : NULL;
}

#endif /* MEGAHOST_TESTS_BAD_PLUGIN_COMMON_H */
