#pragma once
// A bounded FIFO shared by threads: producers never wait (try_push fails when it is full, so the
// server can answer 429 at once), the consumer waits with a deadline. Thread-safe.

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

namespace ra::serve {

template <typename T>
class BoundedQueue {
 public:
  using Clock = std::chrono::steady_clock;

  explicit BoundedQueue(size_t capacity) : capacity_(capacity) {}

  // Appends `item` unless the queue holds `capacity` items or is closed. Returns whether it did.
  bool try_push(T item) {
    {
      std::lock_guard lock(mutex_);
      if (closed_ || items_.size() >= capacity_) return false;
      items_.push_back(std::move(item));
    }
    cv_.notify_one();
    return true;
  }

  // The oldest item; waits for one until `deadline`. Empty at the deadline, or once closed and empty.
  std::optional<T> pop_until(Clock::time_point deadline) {
    std::unique_lock lock(mutex_);
    cv_.wait_until(lock, deadline, [&] { return closed_ || !items_.empty(); });
    if (items_.empty()) return std::nullopt;
    T item = std::move(items_.front());
    items_.pop_front();
    return item;
  }

  // Removes the first item equal to `item`; returns whether there was one.
  bool remove(const T& item) {
    std::lock_guard lock(mutex_);
    const auto it = std::find(items_.begin(), items_.end(), item);
    if (it == items_.end()) return false;
    items_.erase(it);
    return true;
  }

  // Refuses later pushes, wakes the consumer, and returns what was still queued, oldest first.
  std::vector<T> close() {
    std::vector<T> left;
    {
      std::lock_guard lock(mutex_);
      closed_ = true;
      left.assign(std::make_move_iterator(items_.begin()), std::make_move_iterator(items_.end()));
      items_.clear();
    }
    cv_.notify_all();
    return left;
  }

  size_t size() const {
    std::lock_guard lock(mutex_);
    return items_.size();
  }
  size_t capacity() const { return capacity_; }

 private:
  const size_t capacity_;
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<T> items_;
  bool closed_ = false;
};

}  // namespace ra::serve
