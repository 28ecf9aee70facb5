#pragma once
// A thread that calls heartbeat() on a set of channels every kHeartbeatPeriod, so that peers can tell a
// process that is busy (a long prefill, an index build) from one that died or was stopped.

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "transport/channel.h"

namespace ra::transport {

class HeartbeatThread {
 public:
  explicit HeartbeatThread(std::vector<Channel*> channels) : channels_(std::move(channels)) {
    thread_ = std::thread([this] { run(); });
  }
  ~HeartbeatThread() {
    {
      std::lock_guard lock(mutex_);
      stop_ = true;
    }
    wake_.notify_all();
    thread_.join();
  }
  HeartbeatThread(const HeartbeatThread&) = delete;
  HeartbeatThread& operator=(const HeartbeatThread&) = delete;

 private:
  void run() {
    std::unique_lock lock(mutex_);
    while (!stop_) {
      for (Channel* c : channels_) {
        try {
          c->heartbeat();
        } catch (...) {
          // A dead peer is reported by the owner's next wait, with its name; nothing to do here.
        }
      }
      wake_.wait_for(lock, kHeartbeatPeriod, [this] { return stop_; });
    }
  }

  std::vector<Channel*> channels_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace ra::transport
