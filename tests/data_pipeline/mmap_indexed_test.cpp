// The mmap-indexed plugin, loaded through core's PluginRegistry as the host loads it.
#include <gtest/gtest.h>
TEST(MMapIndexedPlugin, Placeholder) { SUCCEED(); }
