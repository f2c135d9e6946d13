// ABI v1.0 layout: the frozen sizeof/offsetof values (abi_layout_v1_0.inc) against what C++ and
// C (abi_layout_c.c) compile from the same headers, and a check that every struct declared in
// abi/include is listed, so a new struct cannot slip in unfrozen. Prints the struct sizes.
#include <gtest/gtest.h>

#include <cstddef>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "abi_layout_c.h"
#include "megahost/megahost.h"

namespace {

struct Entry {
  std::string type, member;
  size_t frozen, measured;
};

std::vector<Entry> cxx_layout() {
  std::vector<Entry> out;
#define MH_LAYOUT_SIZE(T, n) out.push_back({#T, "", size_t{n}, sizeof(T)});
#define MH_LAYOUT_FIELD(T, f, off) out.push_back({#T, #f, size_t{off}, offsetof(T, f)});
#include "abi_layout_v1_0.inc"
#undef MH_LAYOUT_SIZE
#undef MH_LAYOUT_FIELD
  return out;
}

std::string describe(const std::string& type, const std::string& member) {
  return member.empty() ? "sizeof(" + type + ")" : "offsetof(" + type + ", " + member + ")";
}

bool is_lp64_x86() {
#if defined(__x86_64__) && defined(__LP64__)
  return true;
#else
  return false;
#endif
}

}  // namespace

TEST(AbiLayout, VersionIsOnePointZero) {
  EXPECT_EQ(MH_ABI_VERSION_MAJOR, 1);
  EXPECT_EQ(MH_ABI_VERSION_MINOR, 0);
}

TEST(AbiLayout, CxxMatchesFrozenV1_0) {
  if (!is_lp64_x86()) GTEST_SKIP() << "the frozen layout is for x86_64";
  const auto layout = cxx_layout();
  ASSERT_GT(layout.size(), 200u);
  std::cout << "ABI v1.0 struct sizes (x86_64):\n";
  for (const auto& e : layout) {
    if (e.member.empty()) std::cout << "  " << e.type << " = " << e.measured << " bytes\n";
    EXPECT_EQ(e.measured, e.frozen) << describe(e.type, e.member) << " changed: frozen ABI v1.0 says " << e.frozen
                                    << " (the C++ compiler measures " << e.measured << ")";
  }
}

TEST(AbiLayout, CMatchesCxx) {
  // C and C++ must agree on every layout, or C plugins and the C++ host would disagree.
  const auto cxx = cxx_layout();
  ASSERT_EQ(mh_abi_layout_c_count, cxx.size());
  for (size_t i = 0; i < cxx.size(); ++i) {
    const mh_abi_layout_entry& c = mh_abi_layout_c[i];
    ASSERT_EQ(c.type, cxx[i].type);
    ASSERT_EQ(c.member, cxx[i].member);
    EXPECT_EQ(c.measured, cxx[i].measured) << describe(c.type, c.member) << ": C says " << c.measured
                                           << ", C++ says " << cxx[i].measured;
  }
}

TEST(AbiLayout, EveryHeaderStructIsFrozen) {
  std::set<std::string> listed;
  for (const auto& e : cxx_layout()) listed.insert(e.type);
  const std::filesystem::path include = std::filesystem::path(MEGAHOST_SOURCE_DIR) / "abi" / "include";
  const std::regex struct_def(R"((?:typedef\s+)?struct\s+(\w+)\s*\{)");
  size_t found = 0;
  for (const auto& f : std::filesystem::recursive_directory_iterator(include)) {
    if (f.path().extension() != ".h") continue;
    std::ifstream in(f.path());
    std::stringstream ss;
    ss << in.rdbuf();
    const std::string text = ss.str();
    for (std::sregex_iterator it(text.begin(), text.end(), struct_def), end; it != end; ++it) {
      ++found;
      EXPECT_TRUE(listed.count((*it)[1].str()))
          << "struct " << (*it)[1] << " in " << f.path()
          << " is not in tests/abi/abi_layout_v1_0.inc. HINT: run tests/abi/gen_abi_layout.py and add its lines";
    }
  }
  EXPECT_EQ(found, listed.size());
}
