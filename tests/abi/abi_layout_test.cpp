// ABI v1.11 layout: the frozen sizeof/offsetof values (abi_layout_v1_11.inc; older minors in abi_layout_v1_{0,...,10}.inc) against what C++ and
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
#include "abi_layout_v1_11.inc"
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

TEST(AbiLayout, VersionIsOnePointOne) {
  EXPECT_EQ(MH_ABI_VERSION_MAJOR, 1);
  EXPECT_EQ(MH_ABI_VERSION_MINOR, 11);  // the layout file below is v1.11
}

TEST(AbiLayout, CxxMatchesFrozenV1_1) {
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
          << " is not in tests/abi/abi_layout_v1_11.inc. HINT: run tests/abi/gen_abi_layout.py and add its lines";
    }
  }
  EXPECT_EQ(found, listed.size());
}

// Append-only across minors: every member offset frozen for a minor is unchanged in the next,
// and no struct shrank. (Only MH_LAYOUT_SIZE lines of grown tables may differ.)
TEST(AbiLayout, MinorOnlyAppends) {
  auto read_lines = [](const char* name) {
    std::ifstream in(std::filesystem::path(MEGAHOST_SOURCE_DIR) / "tests" / "abi" / name);
    std::vector<std::string> lines;
    for (std::string l; std::getline(in, l);)
      if (l.rfind("MH_LAYOUT_", 0) == 0) lines.push_back(l);
    return lines;
  };
  const char* const minors[] = {"abi_layout_v1_0.inc", "abi_layout_v1_1.inc", "abi_layout_v1_2.inc",
                               "abi_layout_v1_3.inc", "abi_layout_v1_4.inc", "abi_layout_v1_5.inc",
                               "abi_layout_v1_6.inc", "abi_layout_v1_7.inc", "abi_layout_v1_8.inc",
                               "abi_layout_v1_9.inc", "abi_layout_v1_10.inc", "abi_layout_v1_11.inc"};
  for (size_t k = 0; k + 1 < std::size(minors); ++k) {
  SCOPED_TRACE(std::string(minors[k]) + " -> " + minors[k + 1]);
  const auto v10 = read_lines(minors[k]), v11 = read_lines(minors[k + 1]);
  ASSERT_GT(v10.size(), 100u);
  const std::set<std::string> now(v11.begin(), v11.end());
  const std::regex size_line(R"(MH_LAYOUT_SIZE\((\w+), (\d+)\))");
  for (const std::string& l : v10) {
    std::smatch m;
    if (std::regex_match(l, m, size_line)) {
      bool found = false;
      for (const std::string& n : v11) {
        std::smatch mn;
        if (std::regex_match(n, mn, size_line) && mn[1] == m[1]) {
          found = true;
          EXPECT_GE(std::stoul(mn[2]), std::stoul(m[2])) << m[1] << " shrank";
        }
      }
      EXPECT_TRUE(found) << m[1] << " disappeared";
    } else {
      EXPECT_TRUE(now.count(l)) << "member moved or vanished: " << l;
    }
  }
  }
}
