#pragma once
// Length-prefixed byte blobs over a pipe: how the UCX tests hand worker addresses between a parent and
// the child it forked (before any channel exists).

#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "common/error.h"

namespace ra::test {

inline void write_all(int fd, const void* data, size_t n) {
  const auto* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    RA_REQUIRE(w > 0, "pipe write failed: {}", std::strerror(errno));
    p += w;
    n -= static_cast<size_t>(w);
  }
}

inline void read_all(int fd, void* data, size_t n) {
  auto* p = static_cast<char*>(data);
  while (n > 0) {
    const ssize_t r = ::read(fd, p, n);
    RA_REQUIRE(r > 0, "pipe read failed (peer gone?): {}", r == 0 ? "end of file" : std::strerror(errno));
    p += r;
    n -= static_cast<size_t>(r);
  }
}

inline void send_blob(int fd, const std::vector<std::byte>& blob) {
  const uint64_t n = blob.size();
  write_all(fd, &n, sizeof n);
  write_all(fd, blob.data(), blob.size());
}

inline std::vector<std::byte> recv_blob(int fd) {
  uint64_t n = 0;
  read_all(fd, &n, sizeof n);
  RA_REQUIRE(n < (1u << 20), "implausible address length {}", n);
  std::vector<std::byte> blob(n);
  read_all(fd, blob.data(), n);
  return blob;
}

}  // namespace ra::test
