#include "common/npy.h"

#include <fcntl.h>
#include <unistd.h>

#include <bit>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>
#include <optional>
#include <string_view>
#include <system_error>

#include "common/error.h"

namespace ra {

static_assert(std::endian::native == std::endian::little, ".npy '<f4' I/O assumes a little-endian host");

namespace {

constexpr char kMagic[] = "\x93NUMPY";
constexpr size_t kMagicSize = 6;
constexpr int64_t kAlign = 64;
constexpr int64_t kMaxBytes = std::numeric_limits<int64_t>::max();

std::string shape_string(std::span<const int64_t> shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) {
    s += std::to_string(shape[i]);
    if (shape.size() == 1 || i + 1 < shape.size()) s += shape.size() == 1 ? "," : ", ";
  }
  return s + ")";
}

// Product of `shape`; nullopt when it (or its size in bytes) overflows int64.
std::optional<int64_t> checked_numel(std::span<const int64_t> shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) return std::nullopt;
    if (d != 0 && n > kMaxBytes / static_cast<int64_t>(sizeof(float)) / d) return std::nullopt;
    n *= d;
  }
  return n;
}

// A value of the header dict: the subset of Python literals a .npy header may hold.
struct PyValue {
  enum Kind { kString, kBool, kTuple, kOther } kind = kOther;
  std::string text;            // kString: the string; kOther: the raw token, for messages
  bool boolean = false;        // kBool
  std::vector<int64_t> ints;   // kTuple: its integer elements
  bool tuple_ok = true;        // kTuple: false when an element is not a non-negative integer
};

// Recursive-descent parser for the header dict literal. Errors name the file and the problem.
class HeaderParser {
 public:
  HeaderParser(std::string_view text, const std::filesystem::path& path) : s_(text), path_(path) {}

  // Parses {'key': value, ...} and returns its entries; nothing but whitespace may follow the '}'.
  std::vector<std::pair<std::string, PyValue>> parse_dict() {
    skip_space();
    RA_REQUIRE(peek() == '{', "{}: .npy header is not a dict (it starts with '{}'): {}", path_.string(),
               snippet(), quoted());
    ++i_;
    std::vector<std::pair<std::string, PyValue>> entries;
    skip_space();
    while (peek() != '}') {
      RA_REQUIRE(peek() == '\'' || peek() == '"', "{}: .npy header is not a dict: expected a quoted key at "
                 "offset {}: {}", path_.string(), i_, quoted());
      std::string key = parse_string();
      skip_space();
      RA_REQUIRE(peek() == ':', "{}: .npy header is not a dict: expected ':' after key '{}': {}",
                 path_.string(), key, quoted());
      ++i_;
      skip_space();
      PyValue value = parse_value();
      for (const auto& e : entries) {
        RA_REQUIRE(e.first != key, "{}: .npy header has the key '{}' twice: {}", path_.string(), key, quoted());
      }
      entries.emplace_back(std::move(key), std::move(value));
      skip_space();
      if (peek() == ',') {
        ++i_;
        skip_space();
      } else {
        RA_REQUIRE(peek() == '}', "{}: .npy header is not a dict: expected ',' or '}}' at offset {}: {}",
                   path_.string(), i_, quoted());
      }
    }
    ++i_;
    skip_space();
    RA_REQUIRE(i_ == s_.size(), "{}: .npy header has text after the dict's closing '}}': {}", path_.string(),
               quoted());
    return entries;
  }

 private:
  char peek() const { return i_ < s_.size() ? s_[i_] : '\0'; }
  void skip_space() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) ++i_;
  }
  std::string snippet() const { return i_ < s_.size() ? std::string(1, s_[i_]) : std::string("end of header"); }
  std::string quoted() const {
    std::string out = "\"";
    for (char c : s_.substr(0, 200)) {
      if (c == '\n') {
        out += "\\n";
      } else if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f) {
        out += fmt::format("\\x{:02x}", static_cast<unsigned char>(c));
      } else {
        out += c;
      }
    }
    return out + (s_.size() > 200 ? "...\"" : "\"");
  }

  std::string parse_string() {
    const char q = s_[i_++];
    const size_t end = s_.find(q, i_);
    RA_REQUIRE(end != std::string_view::npos, "{}: .npy header is not a dict: unterminated string: {}",
               path_.string(), quoted());
    std::string out(s_.substr(i_, end - i_));
    RA_REQUIRE(out.find('\\') == std::string::npos, "{}: .npy header has an escaped string, not supported: {}",
               path_.string(), quoted());
    i_ = end + 1;
    return out;
  }

  PyValue parse_value() {
    PyValue v;
    if (peek() == '\'' || peek() == '"') {
      v.kind = PyValue::kString;
      v.text = parse_string();
      return v;
    }
    if (peek() == '(') {
      v.kind = PyValue::kTuple;
      parse_tuple(v);
      return v;
    }
    // A bare token: True, False, a number, or anything else up to the next separator.
    const size_t begin = i_;
    int depth = 0;
    while (i_ < s_.size()) {
      const char c = s_[i_];
      if (c == '(' || c == '[' || c == '{') ++depth;
      if (c == ')' || c == ']' || c == '}') {
        if (depth == 0) break;
        --depth;
      }
      if (depth == 0 && c == ',') break;
      ++i_;
    }
    std::string_view token = s_.substr(begin, i_ - begin);
    while (!token.empty() && (token.back() == ' ' || token.back() == '\n')) token.remove_suffix(1);
    v.text = std::string(token);
    if (token == "True" || token == "False") {
      v.kind = PyValue::kBool;
      v.boolean = token == "True";
    }
    return v;
  }

  // "(" [int ("," int)* [","]] ")": a one-element tuple needs its trailing comma, as in Python.
  // Anything else inside the parentheses (nested tuples, negative or non-integer items) leaves
  // tuple_ok false; the whole parenthesised text is kept for the message.
  void parse_tuple(PyValue& v) {
    const size_t begin = i_;
    int depth = 0;
    size_t end = begin;
    for (; end < s_.size(); ++end) {
      if (s_[end] == '(') ++depth;
      if (s_[end] == ')' && --depth == 0) break;
    }
    RA_REQUIRE(end < s_.size(), "{}: .npy header is not a dict: unclosed '(' at offset {}: {}", path_.string(),
               begin, quoted());
    i_ = end + 1;
    v.text = std::string(s_.substr(begin, i_ - begin));
    std::string_view body = s_.substr(begin + 1, end - begin - 1);
    auto trim = [](std::string_view t) {
      while (!t.empty() && (t.front() == ' ' || t.front() == '\n')) t.remove_prefix(1);
      while (!t.empty() && (t.back() == ' ' || t.back() == '\n')) t.remove_suffix(1);
      return t;
    };
    body = trim(body);
    if (body.empty()) return;  // () is a scalar
    bool trailing_comma = false;
    while (!body.empty()) {
      const size_t comma = body.find(',');
      std::string_view item = trim(body.substr(0, comma));
      trailing_comma = comma != std::string_view::npos;
      body = trailing_comma ? trim(body.substr(comma + 1)) : std::string_view();
      // Python 2's numpy wrote long ints with an 'L' suffix.
      if (!item.empty() && item.back() == 'L') item.remove_suffix(1);
      int64_t value = 0;
      bool ok = !item.empty() && item.size() <= 18;
      for (char c : item) {
        ok = ok && c >= '0' && c <= '9';
        if (ok) value = value * 10 + (c - '0');
      }
      if (!ok) v.tuple_ok = false;
      v.ints.push_back(value);
    }
    if (v.ints.size() == 1 && !trailing_comma) v.tuple_ok = false;  // "(5)" is an int, not a tuple
  }

  std::string_view s_;
  size_t i_ = 0;
  const std::filesystem::path& path_;
};

std::string read_prefix(std::ifstream& in, size_t n) {
  std::string buf(n, '\0');
  in.read(buf.data(), static_cast<std::streamsize>(n));
  buf.resize(static_cast<size_t>(in.gcount()));
  return buf;
}

// Parses the header from an open stream positioned at byte 0 and checks the file size.
NpyHeader parse_header(std::ifstream& in, const std::filesystem::path& path, int64_t file_size) {
  const std::string p = path.string();
  const std::string start = read_prefix(in, kMagicSize + 2);
  RA_REQUIRE(start.size() >= kMagicSize && std::memcmp(start.data(), kMagic, kMagicSize) == 0,
             "{}: bad magic: a .npy file starts with \\x93NUMPY (file is {} bytes)", p, file_size);
  RA_REQUIRE(start.size() == kMagicSize + 2, "{}: truncated .npy header: the file ends inside the version", p);
  const int major = static_cast<unsigned char>(start[6]);
  const int minor = static_cast<unsigned char>(start[7]);
  RA_REQUIRE((major == 1 || major == 2) && minor == 0,
             "{}: unsupported .npy format version {}.{} (1.0 and 2.0 are supported)", p, major, minor);
  const size_t len_bytes = major == 1 ? 2 : 4;
  const std::string len_field = read_prefix(in, len_bytes);
  RA_REQUIRE(len_field.size() == len_bytes, "{}: truncated .npy header: the file ends inside the header length",
             p);
  uint64_t header_len = 0;
  for (size_t i = 0; i < len_bytes; ++i) header_len |= uint64_t{static_cast<unsigned char>(len_field[i])} << (8 * i);
  const int64_t header_start = static_cast<int64_t>(kMagicSize + 2 + len_bytes);
  RA_REQUIRE(header_start + static_cast<int64_t>(header_len) <= file_size,
             "{}: truncated .npy header: it claims {} bytes but only {} follow", p, header_len,
             file_size - header_start);
  const std::string text = read_prefix(in, header_len);
  RA_REQUIRE(text.size() == header_len, "{}: read error in the .npy header", p);

  HeaderParser parser(text, path);
  const auto entries = parser.parse_dict();
  const PyValue* descr = nullptr;
  const PyValue* fortran = nullptr;
  const PyValue* shape = nullptr;
  for (const auto& [key, value] : entries) {
    if (key == "descr") {
      descr = &value;
    } else if (key == "fortran_order") {
      fortran = &value;
    } else if (key == "shape") {
      shape = &value;
    } else {
      raise("{}: .npy header has an unexpected key '{}' (only descr, fortran_order, shape)", p, key);
    }
  }
  RA_REQUIRE(descr != nullptr, "{}: .npy header has no 'descr' key", p);
  RA_REQUIRE(fortran != nullptr, "{}: .npy header has no 'fortran_order' key", p);
  RA_REQUIRE(shape != nullptr, "{}: .npy header has no 'shape' key", p);
  RA_REQUIRE(descr->kind == PyValue::kString,
             "{}: descr is {} but only '<f4' (little-endian float32) is supported", p, descr->text);
  RA_REQUIRE(descr->text == "<f4", "{}: descr is '{}' but only '<f4' (little-endian float32) is supported", p,
             descr->text);
  RA_REQUIRE(fortran->kind == PyValue::kBool, "{}: fortran_order must be True or False, got {}", p, fortran->text);
  RA_REQUIRE(!fortran->boolean,
             "{}: fortran_order is True; only C-order arrays are supported (save np.ascontiguousarray(a))", p);
  RA_REQUIRE(shape->kind == PyValue::kTuple && shape->tuple_ok,
             "{}: malformed shape {}: expected a tuple of non-negative integers such as (3, 4) or (5,)", p,
             shape->text);

  NpyHeader h;
  h.shape = shape->ints;
  h.data_offset = header_start + static_cast<int64_t>(header_len);
  const std::optional<int64_t> numel = checked_numel(h.shape);
  RA_REQUIRE(numel.has_value(), "{}: malformed shape {}: its size overflows", p, shape->text);
  const int64_t expected = *numel * static_cast<int64_t>(sizeof(float));
  const int64_t actual = file_size - h.data_offset;
  RA_REQUIRE(actual >= expected, "{}: truncated data: shape {} needs {} bytes of float32 but the file has {}", p,
             shape_string(h.shape), expected, actual);
  RA_REQUIRE(actual == expected, "{}: {} trailing bytes after the data (shape {} needs {} bytes, the file has {})",
             p, actual - expected, shape_string(h.shape), expected, actual);
  return h;
}

// Writes all `size` bytes at byte offset `at`, retrying short writes and EINTR.
void pwrite_all(int fd, const void* data, size_t size, int64_t at, const std::filesystem::path& path) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t n = ::pwrite(fd, p, size, static_cast<off_t>(at));
    if (n < 0 && errno == EINTR) continue;
    RA_REQUIRE(n > 0, "{}: write failed: {}", path.string(), n < 0 ? std::strerror(errno) : "no progress");
    p += n;
    size -= static_cast<size_t>(n);
    at += n;
  }
}

int64_t file_size_of(const std::filesystem::path& path) {
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  RA_REQUIRE(!ec, "{}: cannot read .npy file: {}", path.string(), ec.message());
  return static_cast<int64_t>(size);
}

}  // namespace

int64_t NpyHeader::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

NpyHeader read_npy_header(const std::filesystem::path& path) {
  const int64_t size = file_size_of(path);
  std::ifstream in(path, std::ios::binary);
  RA_REQUIRE(in.good(), "{}: cannot open .npy file", path.string());
  return parse_header(in, path, size);
}

NpyArray read_npy_f32(const std::filesystem::path& path) {
  const int64_t size = file_size_of(path);
  std::ifstream in(path, std::ios::binary);
  RA_REQUIRE(in.good(), "{}: cannot open .npy file", path.string());
  const NpyHeader h = parse_header(in, path, size);
  NpyArray a;
  a.shape = h.shape;
  a.data.resize(static_cast<size_t>(h.numel()));
  in.seekg(h.data_offset);
  in.read(reinterpret_cast<char*>(a.data.data()), static_cast<std::streamsize>(a.data.size() * sizeof(float)));
  RA_REQUIRE(in.good() || a.data.empty(), "{}: read error in the .npy data", path.string());
  return a;
}

// Byte-identical to numpy >= 1.23's np.save: the sorted-key dict, then spare spaces so that the first
// dimension can grow to 21 digits in place, then padding of 1-64 spaces and '\n' to a multiple of 64.
std::string make_npy_header(std::span<const int64_t> shape, std::string_view descr) {
  RA_ASSERT(descr.size() == 3);
  std::string dict =
      "{'descr': '" + std::string(descr) + "', 'fortran_order': False, 'shape': " + shape_string(shape) + ", }";
  if (!shape.empty()) dict.append(21 - std::to_string(shape[0]).size(), ' ');
  // Version 1.0 has a 2-byte length; numpy switches to 2.0 (4 bytes) when the header does not fit.
  for (int version : {1, 2}) {
    const int64_t prefix = static_cast<int64_t>(kMagicSize) + 2 + (version == 1 ? 2 : 4);
    const int64_t unpadded = prefix + static_cast<int64_t>(dict.size()) + 1;  // + '\n'
    const int64_t total = unpadded + (kAlign - unpadded % kAlign);
    const int64_t header_len = total - prefix;
    if (version == 1 && header_len > 0xffff) continue;
    std::string out(kMagic, kMagicSize);
    out += static_cast<char>(version);
    out += '\0';
    for (int i = 0; i < (version == 1 ? 2 : 4); ++i) out += static_cast<char>((header_len >> (8 * i)) & 0xff);
    out += dict;
    out.append(static_cast<size_t>(total - unpadded), ' ');
    out += '\n';
    RA_ASSERT(static_cast<int64_t>(out.size()) == total);
    return out;
  }
  RA_ASSERT_MSG(false, "unreachable");
}

void write_npy_f32(const std::filesystem::path& path, std::span<const int64_t> shape, std::span<const float> data) {
  NpyF32Writer writer(path, shape);
  RA_REQUIRE(static_cast<int64_t>(data.size()) == writer.numel(),
             "{}: cannot write shape {} ({} values) from {} values", path.string(), shape_string(shape),
             writer.numel(), data.size());
  writer.write(0, data);
  writer.close();
}

namespace {

template <typename T>
void write_npy_ints(const std::filesystem::path& path, std::span<const int64_t> shape, std::span<const T> data,
                    std::string_view descr) {
  const std::optional<int64_t> numel = checked_numel(shape);
  RA_REQUIRE(numel.has_value() && *numel == static_cast<int64_t>(data.size()),
             "{}: cannot write shape {} from {} values", path.string(), shape_string(shape), data.size());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  const std::string header = make_npy_header(shape, descr);
  out.write(header.data(), static_cast<std::streamsize>(header.size()));
  out.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size_bytes()));
  out.close();
  RA_REQUIRE(out.good(), "{}: write failed", path.string());
}

}  // namespace

void write_npy_i32(const std::filesystem::path& path, std::span<const int64_t> shape, std::span<const int32_t> data) {
  write_npy_ints(path, shape, data, "<i4");
}

void write_npy_i64(const std::filesystem::path& path, std::span<const int64_t> shape, std::span<const int64_t> data) {
  write_npy_ints(path, shape, data, "<i8");
}

NpyF32Writer::NpyF32Writer(const std::filesystem::path& path, std::span<const int64_t> shape) : path_(path) {
  const std::optional<int64_t> numel = checked_numel(shape);
  RA_REQUIRE(numel.has_value(), "{}: cannot write shape {}: a dimension is negative or the size overflows",
             path.string(), shape_string(shape));
  numel_ = *numel;
  const std::string header = make_npy_header(shape);
  data_offset_ = static_cast<int64_t>(header.size());
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  RA_REQUIRE(fd_ >= 0, "{}: cannot create .npy file: {}", path.string(), std::strerror(errno));
  try {
    RA_REQUIRE(::ftruncate(fd_, data_offset_ + numel_ * static_cast<int64_t>(sizeof(float))) == 0,
               "{}: cannot size .npy file to {} bytes: {}", path.string(),
               data_offset_ + numel_ * static_cast<int64_t>(sizeof(float)), std::strerror(errno));
    pwrite_all(fd_, header.data(), header.size(), 0, path);
  } catch (...) {
    ::close(fd_);
    fd_ = -1;
    throw;
  }
}

NpyF32Writer::NpyF32Writer(NpyF32Writer&& other) noexcept
    : path_(std::move(other.path_)), fd_(other.fd_), data_offset_(other.data_offset_), numel_(other.numel_) {
  other.fd_ = -1;
}

NpyF32Writer::~NpyF32Writer() {
  if (fd_ >= 0) ::close(fd_);
}

void NpyF32Writer::write(int64_t offset, std::span<const float> values) {
  RA_REQUIRE(fd_ >= 0, "{}: write after close", path_.string());
  RA_REQUIRE(offset >= 0 && offset + static_cast<int64_t>(values.size()) <= numel_,
             "{}: write of {} values at element {} is outside the array of {}", path_.string(), values.size(),
             offset, numel_);
  pwrite_all(fd_, values.data(), values.size() * sizeof(float),
             data_offset_ + offset * static_cast<int64_t>(sizeof(float)), path_);
}

void NpyF32Writer::close() {
  if (fd_ < 0) return;
  const int fd = fd_;
  fd_ = -1;
  RA_REQUIRE(::close(fd) == 0, "{}: close failed: {}", path_.string(), std::strerror(errno));
}

}  // namespace ra
