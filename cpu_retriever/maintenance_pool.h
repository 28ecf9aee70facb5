#pragma once
// One bounded pool of threads per retriever process for index maintenance (issue 16 item 5): the tail
// merges of every GraphIndex run here instead of on a thread of their own. The thread count is fixed
// at construction, so a process's threads stay constant however many indexes reach their merge
// threshold at once; jobs beyond the threads wait in a bounded queue.
//
// A job is one unit of work of one owner (an index): run() does it on a pool thread, cancelled() runs
// instead when the pool drops it unstarted (cancel(owner), or a shutdown that does not finish the
// queue), so the owner can always tell that its job is over. Jobs report their own errors to their
// owner; an exception that escapes run() is kept by the pool (take_error) and the pool goes on.
//
// RA_MAINTENANCE_IDLE=1 in the environment runs the pool's threads at the kernel's idle priority
// (SCHED_IDLE): a merge then takes only CPU time no other thread wants. Off by default: on the 2-core
// dev machine it made the decode 22% faster but let the merges fall behind, so the graphs' flat tails
// grew and each search scanned 4x the keys (docs/reliability.md); on the GPU machine likewise (64K,
// 2,000-3,000 tokens: 1.3-1.7x faster per token, but a quarter of the keys merged and the tails growing;
// docs/perf.md ninth round).
//
// Threads: every member may be called from any thread. A job must not wait for another job of the
// same pool (a pool of one thread would deadlock).

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace ra::retriever {

class MaintenancePool {
 public:
  struct Job {
    std::function<void()> run;
    std::function<void()> cancelled;  // optional; called (under no pool lock) when dropped unstarted
  };
  enum class Submitted { kQueued, kFull, kClosed };

  // max(1, hardware threads / 8): merges take a fraction of the cores the searches need.
  static int default_threads();
  static constexpr size_t kDefaultQueue = 4096;  // > the indexes of any one retriever at 8B geometry

  // threads >= 1 (0: default_threads()), max_queued >= 1. Starts the threads now.
  explicit MaintenancePool(int threads = 0, size_t max_queued = kDefaultQueue);
  ~MaintenancePool();  // shutdown(false)
  MaintenancePool(const MaintenancePool&) = delete;
  MaintenancePool& operator=(const MaintenancePool&) = delete;

  // Queues job for `owner` (a tag: cancel(owner) drops it). kFull: the queue holds max_queued jobs;
  // kClosed: after shutdown. Neither runs nor cancels the job; the caller keeps it and may retry.
  Submitted submit(const void* owner, Job job);
  // Drops owner's queued jobs, calling their cancelled(), and returns how many. A job of owner that a
  // thread has already started keeps running: the owner waits for it by its own means.
  size_t cancel(const void* owner);
  // Blocks until no job is queued or running.
  void wait_idle();
  // Stops taking jobs, then either runs the queued ones (finish_queued) or drops them (cancelled()),
  // and joins the threads. Idempotent.
  void shutdown(bool finish_queued);

  // The first exception that escaped a job's run() since the last call, or null.
  std::exception_ptr take_error();
  // Work done so far: jobs run, and their time on the pool's threads (wall, and the threads' own CPU
  // time: the difference is time the jobs were runnable but not running, e.g. preempted by searches).
  struct Stats {
    int64_t jobs = 0;
    double wall_seconds = 0;
    double cpu_seconds = 0;
  };
  Stats stats() const;
  int threads() const { return static_cast<int>(threads_.size()); }
  size_t queued() const;
  size_t max_queued() const { return max_queued_; }

 private:
  struct Entry {
    const void* owner;
    Job job;
  };
  void work();
  static void drop(std::vector<Entry>& dropped);

  const size_t max_queued_;
  mutable std::mutex mutex_;
  std::condition_variable has_work_;
  std::condition_variable idle_;
  std::deque<Entry> queue_;
  int running_ = 0;
  bool closing_ = false;
  bool finish_queued_ = true;
  std::exception_ptr error_;
  Stats stats_;  // under mutex_
  std::mutex join_mutex_;  // one shutdown joins
  std::vector<std::thread> threads_;
};

// The process's pool, made on first use with default_threads() threads. It is never destroyed (so no
// index can outlive it); the threads end with the process.
MaintenancePool& process_maintenance_pool();

}  // namespace ra::retriever
