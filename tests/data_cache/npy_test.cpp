// The .npy reader against files numpy wrote (fixtures/, gen_npy_fixtures.py), the writer
// byte-for-byte against them, refusals of what Megatron never writes, and MD5 vectors.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "megahost/core/data/md5.h"
#include "megahost/core/data/npy.h"
#include "megahost/core/error.h"
#include "scratch.h"

namespace data = megahost::core::data;
using data::NpyDType;
using namespace data_cache_test;

namespace {

const fs::path kFixtures = MEGAHOST_NPY_FIXTURES;

// The formulas of gen_npy_fixtures.py.
int64_t expected(const std::string& name, int64_t i) {
  if (name.rfind("uint32", 0) == 0) return 7 * i + 3;
  if (name.rfind("int16", 0) == 0) return 3 * i - 100;
  return 7 * i - 3;
}

std::string error_of(const fs::path& p) {
  try {
    data::NpyFile::map(p.string());
  } catch (const megahost::core::Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(NpyReader, ReadsWhatNumpyWrote) {
  struct Case {
    const char* file;
    NpyDType dtype;
    std::vector<int64_t> shape;
  };
  const Case cases[] = {
      {"int32_1d.npy", NpyDType::Int32, {10}},      {"int64_1d.npy", NpyDType::Int64, {10}},
      {"uint32_1d.npy", NpyDType::UInt32, {10}},    {"int16_1d.npy", NpyDType::Int16, {10}},
      {"int32_2d.npy", NpyDType::Int32, {10, 2}},   {"int64_2d.npy", NpyDType::Int64, {10, 2}},
      {"int32_empty.npy", NpyDType::Int32, {0}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.file);
    auto f = data::NpyFile::map((kFixtures / c.file).string());
    EXPECT_EQ(f->header().dtype, c.dtype);
    EXPECT_EQ(f->header().shape, c.shape);
    EXPECT_EQ(f->header().data_offset % 64, 0u);  // numpy aligns the data to 64 bytes
    const int64_t n = f->header().count();
    for (int64_t i = 0; i < n; ++i) {
      int64_t v = 0;
      switch (c.dtype) {
        case NpyDType::Int16: v = static_cast<const int16_t*>(f->data())[i]; break;
        case NpyDType::Int32: v = static_cast<const int32_t*>(f->data())[i]; break;
        case NpyDType::UInt32: v = static_cast<const uint32_t*>(f->data())[i]; break;
        default: v = static_cast<const int64_t*>(f->data())[i]; break;
      }
      ASSERT_EQ(v, expected(c.file, i)) << "value " << i;
    }
  }
}

TEST(NpyWriter, WritesNumpysBytes) {
  const fs::path dir = scratch();
  std::vector<int32_t> i32(20);
  std::vector<int64_t> i64(20);
  std::vector<uint32_t> u32(10);
  std::vector<int16_t> i16(10);
  for (int i = 0; i < 20; ++i) i32[i] = 7 * i - 3, i64[i] = 7 * i - 3;
  for (int i = 0; i < 10; ++i) u32[i] = static_cast<uint32_t>(7 * i + 3), i16[i] = static_cast<int16_t>(3 * i - 100);
  struct Case {
    const char* file;
    NpyDType dtype;
    std::vector<int64_t> shape;
    const void* values;
  };
  const Case cases[] = {
      {"int32_1d.npy", NpyDType::Int32, {10}, i32.data()},   {"int64_1d.npy", NpyDType::Int64, {10}, i64.data()},
      {"uint32_1d.npy", NpyDType::UInt32, {10}, u32.data()}, {"int16_1d.npy", NpyDType::Int16, {10}, i16.data()},
      {"int32_2d.npy", NpyDType::Int32, {10, 2}, i32.data()}, {"int64_2d.npy", NpyDType::Int64, {10, 2}, i64.data()},
      {"int32_empty.npy", NpyDType::Int32, {0}, i32.data()},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.file);
    data::write_npy_atomic((dir / c.file).string(), c.dtype, c.shape, c.values);
    EXPECT_EQ(read_bytes(dir / c.file), read_bytes(kFixtures / c.file));
  }
  // Atomic: nothing but the targets is left in the folder.
  size_t files = 0;
  for (const auto& e : fs::directory_iterator(dir)) files += e.is_regular_file() ? 1 : 0;
  EXPECT_EQ(files, std::size(cases));
}

TEST(NpyReader, RefusesWhatMegatronNeverWrites) {
  EXPECT_NE(error_of(kFixtures / "int32_big_endian.npy").find("'>i4' is not supported"), std::string::npos);
  EXPECT_NE(error_of(kFixtures / "int32_fortran.npy").find("Fortran order"), std::string::npos);
  EXPECT_NE(error_of(kFixtures / "float64_1d.npy").find("'<f8' is not supported"), std::string::npos);
}

TEST(NpyReader, ReportsTruncatedAndForeignFiles) {
  const fs::path dir = scratch();
  const std::string good = read_bytes(kFixtures / "int64_2d.npy");
  write_bytes(dir / "cut.npy", good.substr(0, good.size() - 8));
  const std::string cut = error_of(dir / "cut.npy");
  EXPECT_NE(cut.find("truncated .npy file"), std::string::npos) << cut;
  EXPECT_NE(cut.find("cut.npy"), std::string::npos) << cut;
  write_bytes(dir / "header_cut.npy", good.substr(0, 40));
  EXPECT_NE(error_of(dir / "header_cut.npy").find("truncated .npy header"), std::string::npos);
  write_bytes(dir / "text.npy", "just some text, not an array at all");
  EXPECT_NE(error_of(dir / "text.npy").find("bad magic"), std::string::npos);
  write_bytes(dir / "empty.npy", "");
  EXPECT_NE(error_of(dir / "empty.npy").find("bad magic"), std::string::npos);
  EXPECT_NE(error_of(dir / "missing.npy").find("cannot open"), std::string::npos);
}

TEST(Md5, KnownVectors) {
  // Python: hashlib.md5(s).hexdigest(); lengths around the 56- and 64-byte padding edges.
  EXPECT_EQ(data::md5_hex(""), "d41d8cd98f00b204e9800998ecf8427e");
  EXPECT_EQ(data::md5_hex("abc"), "900150983cd24fb0d6963f7d28e17f72");
  EXPECT_EQ(data::md5_hex("The quick brown fox jumps over the lazy dog"), "9e107d9d372bb6826bd81d3542a419d6");
  EXPECT_EQ(data::md5_hex(std::string(1000, 'a')), "cabe45dcc9ae5b66ba86600cca6b8ba8");
  EXPECT_EQ(data::md5_hex(std::string(55, 'x')), "04364420e25c512fd958a70738aa8f72");
  EXPECT_EQ(data::md5_hex(std::string(56, 'x')), "668a72d5ba17f08e62dabcafad6db14b");
  EXPECT_EQ(data::md5_hex(std::string(64, 'x')), "c1bb4f81d892b2d57947682aeb252456");
}
