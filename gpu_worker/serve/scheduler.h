#pragma once
// The decode thread: one decode stream at a time. Jobs wait in a bounded FIFO (BoundedQueue); submit()
// fails at once when it is full (the route answers 429). A job whose client left is taken out of the
// queue (withdraw) or, when running, stops before its next token (its cancel flag).

#include <atomic>
#include <memory>
#include <mutex>
#include <thread>

#include "gpu_worker/serve/bounded_queue.h"
#include "gpu_worker/serve/job.h"
#include "gpu_worker/serve/metrics.h"
#include "gpu_worker/serve/served_model.h"

namespace ra::serve {

class Scheduler {
 public:
  // Starts the decode thread on `model` (which must outlive the scheduler). `capacity`: jobs that may
  // wait behind the running one.
  Scheduler(ServedModel& model, Metrics& metrics, size_t capacity);
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Queues `job`; false when the queue is full or the scheduler has stopped.
  bool submit(const std::shared_ptr<Job>& job);
  // Takes `job` out of the queue if it has not started, ending it as cancelled. A running job is not
  // touched here: cancel() it.
  void withdraw(const std::shared_ptr<Job>& job);
  // Cancels the running job and ends every queued one as cancelled, then joins the decode thread
  // (within one token). Idempotent.
  void stop();
  bool stopped() const { return stopping_.load(); }

 private:
  void loop();
  void end_unstarted(Job& job);

  ServedModel& model_;
  Metrics& metrics_;
  BoundedQueue<std::shared_ptr<Job>> queue_;
  std::atomic<bool> stopping_{false};
  std::mutex stop_mutex_;
  std::mutex running_mutex_;
  std::shared_ptr<Job> running_;
  std::thread thread_;  // last: starts once the rest exists
};

}  // namespace ra::serve
