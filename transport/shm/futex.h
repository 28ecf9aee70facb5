#pragma once
// Blocking on a 32-bit word in memory that two processes share (Linux futex, shared: no
// FUTEX_PRIVATE_FLAG, so the kernel keys the wait on the physical page and a waker in another process
// that maps the same segment finds the waiter).

#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <climits>
#include <cstdint>

namespace ra::transport::shm {

static_assert(sizeof(std::atomic<uint32_t>) == sizeof(uint32_t) && std::atomic<uint32_t>::is_always_lock_free,
              "a futex word must be a plain 32-bit word");

// Sleeps while word == expected, until futex_wake_all(word) or `timeout` (relative; <= 0 returns at
// once). Returns at once when the word already differs; may also return spuriously (signals), so the
// caller rechecks its condition.
inline void futex_wait(std::atomic<uint32_t>& word, uint32_t expected, std::chrono::nanoseconds timeout) {
  if (timeout.count() <= 0) return;
  const timespec ts{static_cast<time_t>(timeout.count() / 1'000'000'000),
                    static_cast<long>(timeout.count() % 1'000'000'000)};
  ::syscall(SYS_futex, reinterpret_cast<uint32_t*>(&word), FUTEX_WAIT, expected, &ts, nullptr, 0);
}

// Wakes every process and thread sleeping in futex_wait on word.
inline void futex_wake_all(std::atomic<uint32_t>& word) {
  ::syscall(SYS_futex, reinterpret_cast<uint32_t*>(&word), FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0);
}

}  // namespace ra::transport::shm
