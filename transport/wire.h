#pragma once
// Packing and unpacking of message payloads (layouts in messages.h). The writer appends trivially
// copyable structs and float arrays to a byte vector whose capacity is reused between messages; the
// reader checks every read against the payload's size, so a truncated or oversized message from a
// peer becomes a PeerError that names the message and the peer instead of a wild read.

#include <cstddef>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "transport/channel.h"

namespace ra::transport {

class WireWriter {
 public:
  explicit WireWriter(std::vector<std::byte>& out) : out_(out) { out_.clear(); }

  template <typename T>
  void put(const T& value) {
    static_assert(std::is_trivially_copyable_v<T>);
    put_bytes(&value, sizeof(T));
  }
  void put_floats(const float* data, size_t count) { put_bytes(data, count * sizeof(float)); }
  void put_int32s(const int32_t* data, size_t count) { put_bytes(data, count * sizeof(int32_t)); }
  // Zero bytes up to a multiple of 4 of the payload so far (after a block of narrow rows: common/wire_rows.h).
  void pad_to_4() {
    const size_t at = out_.size();
    out_.resize((at + 3) & ~size_t{3}, std::byte{0});
  }
  void put_text(std::string_view text) { put_bytes(text.data(), text.size()); }
  void put_bytes(const void* data, size_t bytes) {
    const size_t at = out_.size();
    out_.resize(at + bytes);
    if (bytes) std::memcpy(out_.data() + at, data, bytes);
  }

 private:
  std::vector<std::byte>& out_;
};

class WireReader {
 public:
  // `what` names the message and its sender for errors, e.g. "kStep from retriever rank 1". It is kept
  // as a view: it must outlive the reader, so a temporary string is refused at compile time (a reader
  // of a malformed message read the freed name: found by tests/fuzz/retriever_messages_fuzz).
  WireReader(std::span<const std::byte> payload, std::string_view what) : payload_(payload), what_(what) {}
  WireReader(std::span<const std::byte> payload, const char* what) : payload_(payload), what_(what) {}
  WireReader(std::span<const std::byte> payload, std::string&& what) = delete;

  template <typename T>
  T get() {
    static_assert(std::is_trivially_copyable_v<T>);
    T value;
    std::memcpy(&value, take(sizeof(T)), sizeof(T));
    return value;
  }
  // A view of the next `count` floats (unaligned payloads are copied by the caller if needed; every
  // layout in messages.h keeps float arrays 4-byte aligned).
  const float* floats(size_t count) { return reinterpret_cast<const float*>(take(count * sizeof(float))); }
  const int32_t* int32s(size_t count) { return reinterpret_cast<const int32_t*>(take(count * sizeof(int32_t))); }
  // A view of the next `bytes` bytes (rows of any form: common/wire_rows.h).
  const std::byte* bytes(size_t bytes) { return take(bytes); }
  std::string_view text(size_t bytes) { return {reinterpret_cast<const char*>(take(bytes)), bytes}; }
  size_t remaining() const { return payload_.size() - at_; }

  // Every byte must have been read: a longer message is as malformed as a shorter one.
  void expect_end() const {
    if (at_ != payload_.size()) {
      throw PeerError(std::string(what_) + ": " + std::to_string(payload_.size() - at_) +
                      " unexpected trailing bytes (message layout mismatch)");
    }
  }

 private:
  const std::byte* take(size_t bytes) {
    if (bytes > payload_.size() - at_) {
      throw PeerError(std::string(what_) + ": truncated message (needs " + std::to_string(at_ + bytes) +
                      " bytes, has " + std::to_string(payload_.size()) + ")");
    }
    const std::byte* p = payload_.data() + at_;
    at_ += bytes;
    return p;
  }

  std::span<const std::byte> payload_;
  std::string_view what_;
  size_t at_ = 0;
};

}  // namespace ra::transport
