// The broken-plugin fixtures (bad_plugins/) are what loader tests rely on: check that each is
// built, sits in MEGAHOST_BAD_PLUGIN_DIR (not in the normal plugin folder), exports
// megahost_plugin_v1, and is broken in exactly its one intended way.
#include <dlfcn.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "megahost/megahost.h"

namespace fs = std::filesystem;

namespace {

const mh_plugin_entry_v1* open_entry(const std::string& file) {
  const fs::path path = fs::path(MEGAHOST_BAD_PLUGIN_DIR) / file;
  void* lib = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);  // never closed, like the host
  if (lib == nullptr) {
    ADD_FAILURE() << "cannot dlopen " << path << ": " << dlerror();
    return nullptr;
  }
  return static_cast<const mh_plugin_entry_v1*>(dlsym(lib, MH_PLUGIN_ENTRY_SYMBOL_V1));
}

}  // namespace

TEST(BadPlugins, LiveOutsideTheNormalPluginFolder) {
  EXPECT_NE(fs::path(MEGAHOST_BAD_PLUGIN_DIR), fs::path(MEGAHOST_BUILD_PLUGIN_DIR));
  for (const char* f : {"libmegahost_test_bad_abi_major.so", "libmegahost_test_bad_fingerprint.so"}) {
    EXPECT_TRUE(fs::exists(fs::path(MEGAHOST_BAD_PLUGIN_DIR) / f)) << f;
    EXPECT_FALSE(fs::exists(fs::path(MEGAHOST_BUILD_PLUGIN_DIR) / f)) << f;
  }
}

TEST(BadPlugins, WrongAbiMajor) {
  const auto* e = open_entry("libmegahost_test_bad_abi_major.so");
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->hdr.abi.major, 2u);
  EXPECT_EQ(e->hdr.struct_size, sizeof(mh_plugin_entry_v1));
  ASSERT_NE(e->fingerprint, nullptr);
  EXPECT_EQ(e->fingerprint->links_libtorch, 0);  // only the major is wrong
}

TEST(BadPlugins, WrongFingerprint) {
  const auto* e = open_entry("libmegahost_test_bad_fingerprint.so");
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->hdr.abi.major, static_cast<uint32_t>(MH_ABI_VERSION_MAJOR));  // only the fingerprint is wrong
  ASSERT_NE(e->fingerprint, nullptr);
  EXPECT_EQ(e->fingerprint->links_libtorch, 1);
  EXPECT_STREQ(e->fingerprint->torch_version, "0.0.0");
}
