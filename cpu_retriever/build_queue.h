#pragma once
// The retriever's index builds, off its request loop (issue 16): kBuild payloads are handed to a few
// background threads that build them, so the loop keeps taking the next layer off the channel while
// earlier ones build, and the worker's prefill never waits for a build to drain the channel.
//
// With several workers, builds of different layers run at once (each on its share of the retriever's
// threads: a graph build's serial parts then overlap another's parallel ones); two builds of one key
// (the layer) never do, and run in submission order. Results are handed out in submission order.
// Only the loop's thread talks to the channel: it collects finished builds with take_done() and sends
// their kBuildDone itself (a channel is not shared between threads).

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <map>
#include <mutex>
#include <set>
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

  // workers >= 1 threads run `build`; each calls on_worker_start first (e.g. to size its OpenMP team).
  explicit BuildQueue(BuildFn build, int workers = 1, std::function<void()> on_worker_start = {});
  ~BuildQueue();  // finishes the builds in progress, drops the queued ones
  BuildQueue(const BuildQueue&) = delete;
  BuildQueue& operator=(const BuildQueue&) = delete;

  // Queues a build; `key` names what it writes (the layer): builds of one key run one at a time, in
  // order. Dropped once a build has failed (take_done rethrows that failure).
  void submit(uint64_t seq, uint64_t key, std::vector<std::byte> payload);
  // Appends the builds finished since the last call whose predecessors have all finished, in
  // submission order, and returns whether the queue was idle as they were taken: true means every
  // submitted build's result is now in `out` (both read under one lock, so a caller that then blocks
  // on its channel cannot strand a result that finished between two calls). Rethrows the error of a
  // build that failed (queued builds are not run; running ones finish, their results dropped).
  bool take_done(std::vector<FinishedBuild>& out);
  // Nothing queued or building (finished builds may still wait in take_done).
  bool idle() const;
  // Blocks until a result can be taken, a build fails, the queue is idle, or `timeout` passes.
  void wait_for_progress(std::chrono::microseconds timeout);

  int workers() const { return static_cast<int>(threads_.size()); }

 private:
  struct Job {
    uint64_t order;  // submission index
    uint64_t seq, key;
    std::vector<std::byte> payload;
  };
  void run(const std::function<void()>& on_start);
  bool idle_locked() const { return queue_.empty() && running_keys_.empty(); }
  bool releasable_locked() const { return !done_.empty() && done_.begin()->first == next_release_; }

  BuildFn build_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> queue_;
  std::multiset<uint64_t> running_keys_;
  std::map<uint64_t, FinishedBuild> done_;  // by submission index, until released in order
  uint64_t next_order_ = 0, next_release_ = 0;
  bool closing_ = false;
  std::exception_ptr error_;
  std::vector<std::thread> threads_;
};

}  // namespace ra::retriever
