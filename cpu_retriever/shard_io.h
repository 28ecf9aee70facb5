#pragma once
// A binary stream pair for saving built shards (issue 18: `ra serve --load` must not rebuild the
// retrievers' indexes; HeadShard::save / load).
//
// Values are written as their bytes in host order (little-endian on every machine we build for; a
// record's header carries a byte-order mark and the reader refuses a record of the other order). An
// array is a uint64 element count, then the elements. Nothing is aligned: the reader copies every
// value out (memcpy), so records may sit at any offset of a file.
//
// The reader checks every read against the bytes left and throws ra::Error naming its context and the
// field being read ("shard layer 3 kv head 1: graph 0: adjacency neighbours: 40 bytes left, 512
// needed"), before allocating anything a count asks for: a truncated or corrupt input gives an error,
// never a huge allocation or a read past the end.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "common/error.h"

namespace ra::retriever {

class ShardWriter {
 public:
  // Appends to out (not owned; it must outlive the writer).
  explicit ShardWriter(std::vector<std::byte>& out) : out_(out) {}

  template <typename T>
  void put(const T& value) {
    static_assert(std::is_trivially_copyable_v<T>);
    put_bytes(&value, sizeof(T));
  }
  // A uint64 count, then the elements.
  template <typename T>
  void put_array(std::span<const T> values) {
    static_assert(std::is_trivially_copyable_v<T>);
    put<uint64_t>(values.size());
    put_bytes(values.data(), values.size_bytes());
  }
  template <typename T>
  void put_array(const std::vector<T>& values) {
    put_array(std::span<const T>(values));
  }
  void put_string(std::string_view s) {
    put<uint64_t>(s.size());
    put_bytes(s.data(), s.size());
  }
  void put_bytes(const void* data, size_t bytes);

  size_t size() const { return out_.size(); }
  // The bytes written so far (FAISS's writer appends to them directly: faiss_indexes.h).
  std::vector<std::byte>& bytes() { return out_; }
  // Overwrites the value at byte offset `at` (< size()), e.g. a length written before what it counts.
  template <typename T>
  void patch(size_t at, const T& value) {
    static_assert(std::is_trivially_copyable_v<T>);
    RA_ASSERT(at <= out_.size() && sizeof(T) <= out_.size() - at);
    std::memcpy(out_.data() + at, &value, sizeof(T));
  }

 private:
  std::vector<std::byte>& out_;
};

class ShardReader {
 public:
  // bytes: not owned, read in place (they must outlive the reader and what take() returns). context:
  // what is read, for errors, e.g. "shard layer 3 kv head 1" (copied).
  ShardReader(std::span<const std::byte> bytes, std::string context)
      : bytes_(bytes), context_(std::move(context)) {}

  template <typename T>
  T get(std::string_view field) {
    static_assert(std::is_trivially_copyable_v<T>);
    T value;
    std::memcpy(&value, take(sizeof(T), field).data(), sizeof(T));
    return value;
  }
  // An array as ShardWriter::put_array wrote it. The count is checked against the bytes left (and
  // against max_count) before anything is allocated.
  template <typename T>
  std::vector<T> get_array(std::string_view field, uint64_t max_count = UINT64_MAX) {
    static_assert(std::is_trivially_copyable_v<T>);
    const auto count = get<uint64_t>(field);
    if (count > max_count) fail(field, fmt::format("{} elements, at most {} expected", count, max_count));
    if (count > left() / sizeof(T)) need(field, count, sizeof(T));
    std::vector<T> out(static_cast<size_t>(count));
    const std::span<const std::byte> raw = take(out.size() * sizeof(T), field);
    if (!raw.empty()) std::memcpy(out.data(), raw.data(), raw.size());
    return out;
  }
  std::string get_string(std::string_view field, uint64_t max_bytes = 4096);
  // The next `bytes` bytes, in place.
  std::span<const std::byte> take(size_t bytes, std::string_view field);

  size_t left() const { return bytes_.size() - at_; }
  size_t offset() const { return at_; }
  const std::string& context() const { return context_; }

  // Throws ra::Error "<context>: <field>: <what>".
  [[noreturn]] void fail(std::string_view field, std::string_view what) const;
  // fail(field, the formatted message) unless ok; the message is formatted only then (checks run per
  // element of large arrays).
  template <typename... A>
  void check(bool ok, std::string_view field, fmt::format_string<A...> what, A&&... args) const {
    if (!ok) fail(field, fmt::format(what, std::forward<A>(args)...));
  }

  // Extends the context by ": <name>" until the guard ends, e.g. "shard ...: graph 1".
  class Section {
   public:
    Section(ShardReader& in, std::string_view name) : in_(in), keep_(in.context_.size()) {
      in.context_.append(": ").append(name);
    }
    ~Section() { in_.context_.resize(keep_); }
    Section(const Section&) = delete;
    Section& operator=(const Section&) = delete;

   private:
    ShardReader& in_;
    size_t keep_;
  };
  Section section(std::string_view name) { return Section(*this, name); }

 private:
  [[noreturn]] void need(std::string_view field, uint64_t count, size_t size) const;

  std::span<const std::byte> bytes_;
  std::string context_;
  size_t at_ = 0;
};

// The fixed start of every saved record: an 8-byte magic naming what follows, the format version, and
// a byte-order mark (0x01020304 as the writer's host stores it) with the sizes of the value types the
// format uses, so a record from a host of another byte order or ABI is refused, not misread.
struct RecordHeader {
  char magic[8] = {};
  uint32_t version = 0;
  uint32_t byte_order = 0x01020304u;
  uint8_t sizes[4] = {sizeof(float), sizeof(double), sizeof(int64_t), sizeof(int32_t)};
};
static_assert(sizeof(RecordHeader) == 20);

void write_record_header(ShardWriter& out, const char (&magic)[9], uint32_t version);
// Reads a header and checks magic, byte order, sizes and version (== version: older or newer records
// are refused by name, with both versions).
void read_record_header(ShardReader& in, const char (&magic)[9], uint32_t version);

}  // namespace ra::retriever
