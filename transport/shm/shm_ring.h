#pragma once
// A single-producer single-consumer byte ring over memory that two processes share (the layout and
// protocol are described in shm_channel.h). This file knows nothing about messages, liveness or
// processes: it moves bytes and publishes positions.
//
// Positions are byte counts since the ring was created and never wrap (2^64 bytes is centuries at any
// memory bandwidth); a position p lives at data[p & (capacity - 1)].
//   head: bytes written so far, stored only by the producer (release), after the bytes themselves;
//   tail: bytes read so far, stored only by the consumer (release), after it has copied them out.
// The producer may write while head - tail < capacity; the consumer may read while tail < head. Each side
// keeps a private copy of its own position and a cached copy of the other's, and rereads the shared one
// (acquire) only when the cache says it must wait: a producer that is ahead of the consumer touches no
// cache line the consumer writes.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "common/error.h"

namespace ra::transport::shm {

// Two 64-byte lines: the adjacent-line prefetcher pulls pairs, so 128 keeps head and tail from sharing.
inline constexpr std::size_t kCacheLine = 128;

// std::atomic in memory that another process maps is only sound when it needs no process-local lock.
static_assert(std::atomic<uint64_t>::is_always_lock_free);

struct RingControl {
  alignas(kCacheLine) std::atomic<uint64_t> head{0};  // bytes published by the producer
  alignas(kCacheLine) std::atomic<uint64_t> tail{0};  // bytes released by the consumer
};
static_assert(sizeof(RingControl) == 2 * kCacheLine);

// The producer's view: data is [capacity] bytes, capacity a power of two.
class RingWriter {
 public:
  RingWriter() = default;
  RingWriter(RingControl* control, std::byte* data, uint64_t capacity)
      : control_(control), data_(data), capacity_(capacity), head_(control->head.load(std::memory_order_relaxed)),
        tail_cache_(control->tail.load(std::memory_order_acquire)) {
    RA_ASSERT(capacity != 0 && (capacity & (capacity - 1)) == 0);
  }

  uint64_t capacity() const { return capacity_; }

  // Bytes that may be written now. Rereads the consumer's tail only when the cached value shows fewer
  // than `want` free, so the common case is a subtraction.
  uint64_t free_bytes(uint64_t want) {
    uint64_t free = capacity_ - (head_ - tail_cache_);
    if (free < want) {
      tail_cache_ = control_->tail.load(std::memory_order_acquire);
      free = capacity_ - (head_ - tail_cache_);
    }
    return free;
  }

  // Appends n <= free_bytes() bytes; the consumer sees them only after publish().
  void put(const void* src, uint64_t n) {
    RA_ASSERT(n <= capacity_ - (head_ - tail_cache_));
    const uint64_t at = head_ & (capacity_ - 1);
    const uint64_t first = n < capacity_ - at ? n : capacity_ - at;  // bytes before the wrap
    std::memcpy(data_ + at, src, first);
    std::memcpy(data_, static_cast<const std::byte*>(src) + first, n - first);
    head_ += n;
  }

  void publish() { control_->head.store(head_, std::memory_order_release); }

 private:
  RingControl* control_ = nullptr;
  std::byte* data_ = nullptr;  // [capacity_] bytes in the shared segment
  uint64_t capacity_ = 0;      // bytes, a power of two
  uint64_t head_ = 0;          // our position, possibly ahead of the published one
  uint64_t tail_cache_ = 0;    // the consumer's position as last read
};

// The consumer's view.
class RingReader {
 public:
  RingReader() = default;
  RingReader(RingControl* control, const std::byte* data, uint64_t capacity)
      : control_(control), data_(data), capacity_(capacity), tail_(control->tail.load(std::memory_order_relaxed)),
        head_cache_(tail_) {
    RA_ASSERT(capacity != 0 && (capacity & (capacity - 1)) == 0);
  }

  uint64_t capacity() const { return capacity_; }

  // Bytes that may be read now; rereads the producer's head only when the cache shows fewer than `want`.
  // Throws ra::Error when the producer published an impossible head (a corrupt or foreign segment), so a
  // bad peer cannot make get() copy past the ring.
  uint64_t available(uint64_t want) {
    uint64_t avail = head_cache_ - tail_;
    if (avail < want) {
      head_cache_ = control_->head.load(std::memory_order_acquire);
      avail = head_cache_ - tail_;
      RA_REQUIRE(avail <= capacity_, "shared-memory ring is corrupt: head {} is {} bytes past tail {} (capacity {})",
                 head_cache_, avail, tail_, capacity_);
    }
    return avail;
  }

  // Copies out the next n <= available() bytes; the producer may reuse them only after publish().
  void get(void* dst, uint64_t n) {
    RA_ASSERT(n <= head_cache_ - tail_);
    const uint64_t at = tail_ & (capacity_ - 1);
    const uint64_t first = n < capacity_ - at ? n : capacity_ - at;
    std::memcpy(dst, data_ + at, first);
    std::memcpy(static_cast<std::byte*>(dst) + first, data_, n - first);
    tail_ += n;
  }

  void publish() { control_->tail.store(tail_, std::memory_order_release); }

 private:
  RingControl* control_ = nullptr;
  const std::byte* data_ = nullptr;  // [capacity_] bytes in the shared segment
  uint64_t capacity_ = 0;            // bytes, a power of two
  uint64_t tail_ = 0;                // our position, possibly ahead of the published one
  uint64_t head_cache_ = 0;          // the producer's position as last read
};

}  // namespace ra::transport::shm
