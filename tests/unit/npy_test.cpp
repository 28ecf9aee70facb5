// The .npy reader and writer (common/npy.h): round trips, byte-exact agreement with the files numpy.save
// writes (spelled out here byte by byte, so the test needs no Python), and a clear error naming the
// file and the problem for every malformed input.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <string>
#include <vector>

#include "common/error.h"
#include "common/npy.h"
#include "tests/support/error_message.h"
#include "tests/support/read_file.h"
#include "tests/support/temp_dir.h"

namespace ra {
namespace {

using ::testing::HasSubstr;

std::string raw_floats(const std::vector<float>& values) {
  return std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float));
}

void write_bytes(const std::filesystem::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

using test::read_file;

// A version 1.0 file as numpy >= 1.14 writes it: the dict padded with spaces to a 64-byte boundary
// and ended by '\n'. `dict` is the header dict text; `data` follows it.
std::string v1_file(const std::string& dict, const std::string& data, size_t align = 64) {
  const size_t unpadded = 10 + dict.size() + 1;
  const size_t total = (unpadded + align - 1) / align * align;
  const size_t header_len = total - 10;
  std::string out("\x93NUMPY\x01\x00", 8);
  out += static_cast<char>(header_len & 0xff);
  out += static_cast<char>(header_len >> 8);
  out += dict;
  out.append(total - unpadded, ' ');
  out += '\n';
  return out + data;
}

std::vector<float> iota(size_t n, float start = 0.0f) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = start + static_cast<float>(i) * 0.5f;
  return v;
}

class NpyTest : public ::testing::Test {
 protected:
  std::filesystem::path file(const std::string& name) const { return dir_.path() / name; }

  // Writes `bytes` to the file `name`, then expect_error on it.
  void expect_file_error(const std::string& name, const std::string& bytes, const std::vector<std::string>& parts) {
    write_bytes(file(name), bytes);
    expect_error(file(name), parts);
  }

  // Expects read_npy_f32 and read_npy_header to fail on `path` with a message naming the file and
  // containing every one of `parts`.
  void expect_error(const std::filesystem::path& path, const std::vector<std::string>& parts) {
    for (int reader = 0; reader < 2; ++reader) {
      const std::string msg = test::error_of([&] {
        if (reader == 0) {
          read_npy_f32(path);
        } else {
          read_npy_header(path);
        }
      });
      EXPECT_THAT(msg, HasSubstr(path.string())) << "reader " << reader;
      for (const std::string& part : parts) EXPECT_THAT(msg, HasSubstr(part));
    }
  }

  // A valid header dict with one field replaced.
  static std::string dict(const std::string& descr = "'<f4'", const std::string& fortran = "False",
                          const std::string& shape = "(2, 3)") {
    return "{'descr': " + descr + ", 'fortran_order': " + fortran + ", 'shape': " + shape + ", }";
  }

  test::TempDir dir_{"ra-npy-test"};
};

TEST_F(NpyTest, RoundTripsOneDimension) {
  const std::vector<float> values = iota(7, -1.0f);
  const std::vector<int64_t> shape = {7};
  write_npy_f32(file("a.npy"), shape, values);
  const NpyArray a = read_npy_f32(file("a.npy"));
  EXPECT_EQ(a.shape, shape);
  EXPECT_EQ(a.data, values);
  EXPECT_EQ(read_npy_header(file("a.npy")).data_offset % 64, 0);
}

TEST_F(NpyTest, RoundTripsThreeDimensions) {
  const std::vector<float> values = iota(2 * 3 * 5);
  const std::vector<int64_t> shape = {2, 3, 5};
  write_npy_f32(file("b.npy"), shape, values);
  const NpyArray a = read_npy_f32(file("b.npy"));
  EXPECT_EQ(a.shape, shape);
  EXPECT_EQ(a.data, values);
  EXPECT_EQ(a.numel(), 30);
}

TEST_F(NpyTest, RoundTripsScalarAndEmptyArrays) {
  write_npy_f32(file("s.npy"), std::vector<int64_t>{}, std::vector<float>{3.5f});
  const NpyArray s = read_npy_f32(file("s.npy"));
  EXPECT_TRUE(s.shape.empty());
  EXPECT_EQ(s.data, std::vector<float>{3.5f});

  write_npy_f32(file("e.npy"), std::vector<int64_t>{0, 3}, std::vector<float>{});
  const NpyArray e = read_npy_f32(file("e.npy"));
  EXPECT_EQ(e.shape, (std::vector<int64_t>{0, 3}));
  EXPECT_TRUE(e.data.empty());
}

TEST_F(NpyTest, KeepsSpecialValuesBitExact) {
  const std::vector<float> values = {0.0f, -0.0f, std::numeric_limits<float>::infinity(),
                                     -std::numeric_limits<float>::infinity(), 1e-42f, 3.4e38f};
  write_npy_f32(file("special.npy"), std::vector<int64_t>{6}, values);
  EXPECT_EQ(read_file(file("special.npy")).substr(128), raw_floats(values));
}

// np.save("a.npy", np.arange(24, dtype="<f4").reshape(2, 3, 4) * 0.5) writes exactly these bytes:
// the dict, 21 - len("2") = 20 spare spaces for in-place growth, then padding of 64 - (len % 64) spaces
// and '\n' (numpy's _wrap_header), so the header length field is 0x76 = 118.
TEST_F(NpyTest, WritesWhatNumpyWrites) {
  const std::string header = std::string("\x93NUMPY\x01\x00\x76\x00", 10) +
                             "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 4), }" +
                             std::string(20 + 35, ' ') + "\n";
  ASSERT_EQ(header.size(), 128u);
  EXPECT_EQ(make_npy_header(std::vector<int64_t>{2, 3, 4}), header);
  const std::vector<float> values = iota(24);
  write_npy_f32(file("np.npy"), std::vector<int64_t>{2, 3, 4}, values);
  EXPECT_EQ(read_file(file("np.npy")), header + raw_floats(values));

  // One-element shapes keep Python's trailing comma; scalars are ().
  EXPECT_THAT(make_npy_header(std::vector<int64_t>{5}), HasSubstr("'shape': (5,), }"));
  EXPECT_THAT(make_npy_header(std::vector<int64_t>{}), HasSubstr("'shape': (), }"));
  // A scalar has no spare growth space: 10 + 55 + 1 = 66 bytes, padded to 128.
  EXPECT_EQ(make_npy_header(std::vector<int64_t>{}).substr(10),
            "{'descr': '<f4', 'fortran_order': False, 'shape': (), }" + std::string(62, ' ') + "\n");
  // numpy pads 64 - (len % 64) spaces: a full 64 when the unpadded header is already aligned. Here
  // 10 + 97 (dict) + 20 (spare) + 1 = 128, so the header is 192 bytes.
  const std::vector<int64_t> aligned = {2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 100000};
  EXPECT_EQ(make_npy_header(aligned).size(), 192u);
}

TEST_F(NpyTest, ReadsFilesAsNumpyWritesThem) {
  const std::vector<float> values = iota(6, 2.0f);
  // numpy >= 1.14 (64-byte alignment).
  write_bytes(file("np64.npy"), v1_file("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }",
                                        raw_floats(values)));
  // Older numpy (16-byte alignment), Python 2 long ints, and keys in another order.
  write_bytes(file("np16.npy"), v1_file("{'shape': (2L, 3L), 'fortran_order': False, 'descr': '<f4'}",
                                        raw_floats(values), 16));
  // Version 2.0: a 4-byte header length.
  {
    const std::string d = "{'descr': '<f4', 'fortran_order': False, 'shape': (6,), }";
    const size_t total = (12 + d.size() + 1 + 63) / 64 * 64;
    const size_t len = total - 12;
    std::string bytes("\x93NUMPY\x02\x00", 8);
    for (int i = 0; i < 4; ++i) bytes += static_cast<char>((len >> (8 * i)) & 0xff);
    bytes += d + std::string(total - 12 - d.size() - 1, ' ') + "\n" + raw_floats(values);
    write_bytes(file("v2.npy"), bytes);
  }
  for (const char* name : {"np64.npy", "np16.npy"}) {
    const NpyArray a = read_npy_f32(file(name));
    EXPECT_EQ(a.shape, (std::vector<int64_t>{2, 3})) << name;
    EXPECT_EQ(a.data, values) << name;
  }
  const NpyArray v2 = read_npy_f32(file("v2.npy"));
  EXPECT_EQ(v2.shape, std::vector<int64_t>{6});
  EXPECT_EQ(v2.data, values);
}

TEST_F(NpyTest, WritesVersion2WhenTheHeaderIsLarge) {
  const std::vector<int64_t> shape(30000, 1);  // "1, " x 30000 does not fit a 16-bit header length
  const std::string header = make_npy_header(shape);
  EXPECT_EQ(header[6], '\x02');
  EXPECT_EQ(header.size() % 64, 0u);
  write_npy_f32(file("big.npy"), shape, std::vector<float>{4.0f});
  const NpyArray a = read_npy_f32(file("big.npy"));
  EXPECT_EQ(a.shape, shape);
  EXPECT_EQ(a.data, std::vector<float>{4.0f});
}

TEST_F(NpyTest, StreamingWriterFillsOutOfOrder) {
  const std::vector<int64_t> shape = {3, 4};
  {
    NpyF32Writer w(file("stream.npy"), shape);
    w.write(8, std::vector<float>{8, 9, 10, 11});
    w.write(0, std::vector<float>{0, 1});
    EXPECT_THROW(w.write(10, std::vector<float>{1, 2, 3}), Error);  // past the end
    EXPECT_THROW(w.write(-1, std::vector<float>{1}), Error);
    w.close();
    EXPECT_THROW(w.write(0, std::vector<float>{1}), Error);  // after close
  }
  const NpyArray a = read_npy_f32(file("stream.npy"));
  EXPECT_EQ(a.data, (std::vector<float>{0, 1, 0, 0, 0, 0, 0, 0, 8, 9, 10, 11}));
}

TEST_F(NpyTest, WriterRejectsBadInput) {
  EXPECT_THROW(write_npy_f32(file("n.npy"), std::vector<int64_t>{2, 3}, iota(5)), Error);
  EXPECT_THROW(write_npy_f32(file("neg.npy"), std::vector<int64_t>{-2, 3}, iota(6)), Error);
  EXPECT_THAT(test::error_of([&] { write_npy_f32(file("no-such-dir/x.npy"), std::vector<int64_t>{1}, iota(1)); }),
              HasSubstr("no-such-dir/x.npy"));
}

// ------------------------------------------------------------------------------------------------
// Malformed files: each names the file and the specific problem.
// ------------------------------------------------------------------------------------------------

TEST_F(NpyTest, MissingFile) { expect_error(file("absent.npy"), {"cannot"}); }

TEST_F(NpyTest, BadMagic) {
  expect_file_error("magic.npy", "PK\x03\x04 this is a zip file, not an npy file........................",
                    {"bad magic"});
  expect_file_error("empty.npy", "", {"bad magic"});
  expect_file_error("short.npy", "\x93NUM", {"bad magic"});
}

TEST_F(NpyTest, UnsupportedVersion) {
  std::string bytes = v1_file(dict(), raw_floats(iota(6)));
  bytes[6] = '\x03';
  expect_file_error("v3.npy", bytes, {"unsupported .npy format version 3.0"});
  bytes[6] = '\x01';
  bytes[7] = '\x01';
  expect_file_error("v11.npy", bytes, {"version 1.1"});
}

TEST_F(NpyTest, TruncatedHeader) {
  const std::string bytes = v1_file(dict(), "");
  expect_file_error("cut-header.npy", bytes.substr(0, 40), {"truncated .npy header", "claims 118 bytes"});
  expect_file_error("cut-version.npy", bytes.substr(0, 7), {"truncated .npy header"});
}

TEST_F(NpyTest, HeaderNotADict) {
  expect_file_error("list.npy", v1_file("['<f4', False, (2, 3)]", raw_floats(iota(6))), {"header is not a dict"});
  expect_file_error("unclosed.npy",
                    v1_file("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)", raw_floats(iota(6))),
                    {"header is not a dict"});
  expect_file_error("after.npy", v1_file(dict() + " junk", raw_floats(iota(6))), {"text after the dict"});
}

TEST_F(NpyTest, MissingOrExtraKeys) {
  expect_file_error("noshape.npy", v1_file("{'descr': '<f4', 'fortran_order': False}", raw_floats(iota(6))),
                    {"no 'shape' key"});
  expect_file_error("extra.npy",
                    v1_file("{'descr': '<f4', 'fortran_order': False, 'shape': (6,), 'x': 1}", raw_floats(iota(6))),
                    {"unexpected key 'x'"});
}

TEST_F(NpyTest, WrongDescrIsNamed) {
  const std::string data = raw_floats(iota(12));  // enough bytes for any of these dtypes
  int i = 0;
  for (const std::string descr : {"<f8", ">f4", "<f2", "|u1", "<i4"}) {
    const std::filesystem::path p = file("descr" + std::to_string(i++) + ".npy");
    write_bytes(p, v1_file(dict("'" + descr + "'"), data));
    expect_error(p, {"descr is '" + descr + "'", "only '<f4'"});
  }
  // A structured dtype's descr is a list, not a string.
  expect_file_error("struct.npy", v1_file(dict("[('a', '<f4'), ('b', '<f4')]", "False", "(3,)"), data),
                    {"descr is [('a', '<f4'), ('b', '<f4')]"});
}

TEST_F(NpyTest, FortranOrderIsRejected) {
  expect_file_error("fortran.npy", v1_file(dict("'<f4'", "True"), raw_floats(iota(6))), {"fortran_order is True"});
  expect_file_error("fortran-odd.npy", v1_file(dict("'<f4'", "0"), raw_floats(iota(6))),
                    {"fortran_order must be True or False"});
}

TEST_F(NpyTest, MalformedShapes) {
  const std::string data = raw_floats(iota(6));
  int i = 0;
  for (const std::string shape : {"(2, -3)", "[2, 3]", "(6)", "(2, x)", "(2,, 3)", "6", "((2, 3),)", "(2.0, 3)"}) {
    const std::filesystem::path p = file("shape" + std::to_string(i++) + ".npy");
    write_bytes(p, v1_file(dict("'<f4'", "False", shape), data));
    expect_error(p, {"malformed shape " + shape});
  }
  expect_file_error("overflow.npy", v1_file(dict("'<f4'", "False", "(999999999999999999, 999999999999)"), data),
                    {"malformed shape", "overflows"});
}

TEST_F(NpyTest, TruncatedData) {
  const std::vector<float> values = iota(6);
  expect_file_error("short-data.npy", v1_file(dict(), raw_floats(values).substr(0, 20)),
                    {"truncated data", "(2, 3)", "needs 24 bytes", "has 20"});
}

TEST_F(NpyTest, TrailingBytes) {
  expect_file_error("long-data.npy", v1_file(dict(), raw_floats(iota(7))),
                    {"4 trailing bytes", "needs 24 bytes", "has 28"});
}

}  // namespace
}  // namespace ra
