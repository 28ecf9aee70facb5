#pragma once
// 64-bit FNV-1a, fed piece by piece: the checksum of every saved-context file (gpu_worker/serve/
// context_files.h), whether the worker or a retriever (cpu_retriever/shard_file.h) wrote it.

#include <cstddef>
#include <cstdint>
#include <string>

#include <fmt/format.h>

namespace ra {

class Fnv1a64 {
 public:
  void add(const void* data, size_t bytes) {
    const auto* p = static_cast<const unsigned char*>(data);
    uint64_t h = h_;
    for (size_t i = 0; i < bytes; ++i) h = (h ^ p[i]) * 0x100000001b3ull;
    h_ = h;
  }
  uint64_t value() const { return h_; }
  std::string hex() const { return fmt::format("{:016x}", h_); }

 private:
  uint64_t h_ = 0xcbf29ce484222325ull;
};

}  // namespace ra
