#pragma once
// NumPy .npy files of little-endian float32 ('<f4') in C order: the exchange format of `ra dump-qkv`
// and the retrieval benchmark, readable with numpy.load and writable with numpy.save.
//
// File layout (format versions 1.0 and 2.0, https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html):
//   bytes 0-5   magic "\x93NUMPY"
//   bytes 6-7   version: major, minor (1.0 or 2.0)
//   then        header length: uint16 little-endian (1.0) or uint32 little-endian (2.0)
//   then        the header: an ASCII Python dict literal
//                 {'descr': '<f4', 'fortran_order': False, 'shape': (d0, d1, ...), }
//               padded with spaces and ending in '\n' so that the data starts at a multiple of 64 bytes
//               (the writer is byte-identical to np.save of numpy 2.x / recent 1.x, which also leaves
//               21 - len(str(d0)) spare spaces so the first dimension can grow in place)
//   then        the data: d0 * d1 * ... float32 values, little-endian, C order (last index fastest):
//               element [i0][i1]...[ik] is at flat index ((i0 * d1 + i1) * d2 + ...) + ik.
// A shape of () is a scalar (one value).
//
// Every reading error is an ra::Error naming the file and what is wrong with it.

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace ra {

// The parsed header of a '<f4' C-order .npy file.
struct NpyHeader {
  std::vector<int64_t> shape;  // dimensions, outermost first; empty for a scalar
  int64_t data_offset = 0;     // byte offset of the first value in the file
  int64_t numel() const;       // product of shape (1 for a scalar)
};

// A whole array in memory.
struct NpyArray {
  std::vector<int64_t> shape;  // as NpyHeader::shape
  std::vector<float> data;     // [numel] float32, C order
  int64_t numel() const { return static_cast<int64_t>(data.size()); }
};

// Validates the header of `path` (magic, version, dict, descr, fortran_order, shape) and that the file
// holds exactly numel() float32 values after it: no fewer (truncated) and no more (trailing bytes).
NpyHeader read_npy_header(const std::filesystem::path& path);

// Reads and validates the whole file.
NpyArray read_npy_f32(const std::filesystem::path& path);

// Writes `data` ([product of shape] float32, C order) as a version 1.0 file (2.0 when the header
// needs more than 65535 bytes), replacing any existing file. Throws ra::Error when data.size() does
// not match the shape, a dimension is negative, or the file cannot be written.
void write_npy_f32(const std::filesystem::path& path, std::span<const int64_t> shape,
                   std::span<const float> data);

// Integer arrays ('<i4', '<i8'), written whole (ra dump-logits' token ids and positions).
void write_npy_i32(const std::filesystem::path& path, std::span<const int64_t> shape, std::span<const int32_t> data);
void write_npy_i64(const std::filesystem::path& path, std::span<const int64_t> shape, std::span<const int64_t> data);

// The header bytes write_npy_f32 puts before the data: magic, version, length and padded dict, exactly
// as np.save writes them. Its size is a multiple of 64. descr: '<f4' (the default), '<i4' or '<i8'.
std::string make_npy_header(std::span<const int64_t> shape, std::string_view descr = "<f4");

// Streams a large array to disk without holding it in memory: the file is created with its header and
// full size up front, then filled by write() calls at element offsets in any order (regions never
// written read back as 0). close() flushes and reports errors; the destructor closes silently.
class NpyF32Writer {
 public:
  NpyF32Writer(const std::filesystem::path& path, std::span<const int64_t> shape);
  ~NpyF32Writer();
  NpyF32Writer(const NpyF32Writer&) = delete;
  NpyF32Writer& operator=(const NpyF32Writer&) = delete;
  NpyF32Writer(NpyF32Writer&& other) noexcept;
  NpyF32Writer& operator=(NpyF32Writer&&) = delete;

  // Writes values to flat elements [offset, offset + values.size()); the range must lie in the array.
  void write(int64_t offset, std::span<const float> values);
  void close();

  const std::filesystem::path& path() const { return path_; }
  int64_t numel() const { return numel_; }

 private:
  std::filesystem::path path_;
  int fd_ = -1;
  int64_t data_offset_ = 0;
  int64_t numel_ = 0;
};

}  // namespace ra
