#pragma once
// The retriever's index builds, off its request loop (issue 16): kBuild payloads are handed to one
// background thread that builds them in arrival order, so the loop keeps taking the next layer off the
// channel while this one builds, and the worker's prefill never waits for a build to drain the channel.
// Only the loop's thread talks to the channel: it collects finished builds with take_done() and sends
// their kBuildDone itself (a channel is not shared between threads).

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <span>
#include <thread>
#include <vector>

#include "transport/messages.h"

namespace ra::retriever {

struct FinishedBuild {
  uint64_t seq = 0;  // the kBuild's, echoed by its kBuildDone
  transport::BuildDonePayload done;
};

class BuildQueue {
 public:
  using BuildFn = std::function<transport::BuildDonePayload(std::span<const std::byte> payload)>;

  explicit BuildQueue(BuildFn build);
  ~BuildQueue();  // finishes the build in progress, drops the queued ones
  BuildQueue(const BuildQueue&) = delete;
  BuildQueue& operator=(const BuildQueue&) = delete;

  // Queues a build; dropped once a build has failed (take_done rethrows that failure).
  void submit(uint64_t seq, std::vector<std::byte> payload);
  // Appends the builds finished since the last call, in submission order, and returns whether the queue
  // was idle as they were taken: true means every submitted build's result is now in `out` (both read
  // under one lock, so a caller that then blocks on its channel cannot strand a result that finished
  // between two calls). Rethrows the error of a build that failed (later builds are not run).
  bool take_done(std::vector<FinishedBuild>& out);
  // Nothing queued or building (finished builds may still wait in take_done).
  bool idle() const;
  // Blocks until a build finishes or fails, or `timeout` passes.
  void wait_for_progress(std::chrono::microseconds timeout);

 private:
  void run();

  BuildFn build_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::pair<uint64_t, std::vector<std::byte>>> queue_;
  std::vector<FinishedBuild> done_;
  bool building_ = false;
  bool closing_ = false;
  std::exception_ptr error_;
  std::thread thread_;
};

}  // namespace ra::retriever
