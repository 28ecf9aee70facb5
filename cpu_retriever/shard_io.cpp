#include "cpu_retriever/shard_io.h"

#include <algorithm>

namespace ra::retriever {

void ShardWriter::put_bytes(const void* data, size_t bytes) {
  if (bytes == 0) return;
  const auto* p = static_cast<const std::byte*>(data);
  out_.insert(out_.end(), p, p + bytes);
}

std::span<const std::byte> ShardReader::take(size_t bytes, std::string_view field) {
  if (bytes > left()) need(field, bytes, 1);
  const std::span<const std::byte> out = bytes_.subspan(at_, bytes);
  at_ += bytes;
  return out;
}

std::string ShardReader::get_string(std::string_view field, uint64_t max_bytes) {
  const auto size = get<uint64_t>(field);
  if (size > max_bytes) fail(field, fmt::format("a string of {} bytes, at most {} expected", size, max_bytes));
  const std::span<const std::byte> raw = take(static_cast<size_t>(size), field);
  return std::string(reinterpret_cast<const char*>(raw.data()), raw.size());
}

void ShardReader::fail(std::string_view field, std::string_view what) const {
  throw Error(fmt::format("{}: {}: {}", context_, field, what));
}

void ShardReader::need(std::string_view field, uint64_t count, size_t size) const {
  // count * size may not fit 64 bits (a corrupt count): say so rather than wrap.
  const bool fits = count <= UINT64_MAX / size;
  fail(field, fits ? fmt::format("{} bytes left, {} needed", left(), count * size)
                   : fmt::format("{} bytes left, {} elements of {} bytes needed", left(), count, size));
}

void write_record_header(ShardWriter& out, const char (&magic)[9], uint32_t version) {
  RecordHeader h;
  std::copy_n(magic, 8, h.magic);
  h.version = version;
  out.put(h);
}

void read_record_header(ShardReader& in, const char (&magic)[9], uint32_t version) {
  const auto h = in.get<RecordHeader>("header");
  const RecordHeader want;
  in.check(std::equal(h.magic, h.magic + 8, magic), "header",
           "magic {:?} is not {:?}: not such a record, or not at its start", std::string_view(h.magic, 8),
           std::string_view(magic, 8));
  in.check(h.byte_order == want.byte_order, "header",
           "byte-order mark {:#010x}, this host reads {:#010x}: the record was written on a host of another byte "
           "order",
           h.byte_order, want.byte_order);
  in.check(std::equal(h.sizes, h.sizes + 4, want.sizes), "header",
           "value sizes (float, double, int64, int32) {}, {}, {}, {} bytes; this host's are {}, {}, {}, {}",
           h.sizes[0], h.sizes[1], h.sizes[2], h.sizes[3], want.sizes[0], want.sizes[1], want.sizes[2],
           want.sizes[3]);
  in.check(h.version == version, "header", "format version {}, this build reads version {} ({})", h.version, version,
           h.version < version ? "written by an older build: build it again and save it with this one"
                               : "written by a newer build");
}

}  // namespace ra::retriever
