#include "cpu_retriever/maintenance_pool.h"

#include <pthread.h>
#include <sched.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "common/error.h"

namespace ra::retriever {

int MaintenancePool::default_threads() {
  return std::max(1, static_cast<int>(std::thread::hardware_concurrency() / 8));
}

MaintenancePool::MaintenancePool(int threads, size_t max_queued) : max_queued_(max_queued) {
  if (threads == 0) threads = default_threads();
  RA_REQUIRE(threads >= 1, "maintenance pool: threads must be >= 1 (got {})", threads);
  RA_REQUIRE(max_queued >= 1, "maintenance pool: max_queued must be >= 1");
  threads_.reserve(static_cast<size_t>(threads));
  for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { work(); });
}

MaintenancePool::~MaintenancePool() { shutdown(false); }

MaintenancePool::Submitted MaintenancePool::submit(const void* owner, Job job) {
  {
    std::lock_guard lock(mutex_);
    if (closing_) return Submitted::kClosed;
    if (queue_.size() >= max_queued_) return Submitted::kFull;
    queue_.push_back({owner, std::move(job)});
  }
  has_work_.notify_one();
  return Submitted::kQueued;
}

void MaintenancePool::drop(std::vector<Entry>& dropped) {
  for (Entry& e : dropped) {
    if (e.job.cancelled) e.job.cancelled();
  }
}

size_t MaintenancePool::cancel(const void* owner) {
  std::vector<Entry> dropped;
  {
    std::lock_guard lock(mutex_);
    for (auto it = queue_.begin(); it != queue_.end();) {
      if (it->owner == owner) {
        dropped.push_back(std::move(*it));
        it = queue_.erase(it);
      } else {
        ++it;
      }
    }
    if (queue_.empty() && running_ == 0) idle_.notify_all();
  }
  drop(dropped);  // outside the lock: the owner's callback may take its own locks
  return dropped.size();
}

void MaintenancePool::wait_idle() {
  std::unique_lock lock(mutex_);
  idle_.wait(lock, [&] { return queue_.empty() && running_ == 0; });
}

void MaintenancePool::shutdown(bool finish_queued) {
  std::vector<Entry> dropped;
  {
    std::lock_guard lock(mutex_);
    if (!closing_) {
      closing_ = true;
      finish_queued_ = finish_queued;
    }
    if (!finish_queued_) {
      for (Entry& e : queue_) dropped.push_back(std::move(e));
      queue_.clear();
    }
  }
  has_work_.notify_all();
  drop(dropped);
  std::lock_guard join_lock(join_mutex_);
  for (std::thread& t : threads_) {
    if (t.joinable()) t.join();
  }
}

std::exception_ptr MaintenancePool::take_error() {
  std::lock_guard lock(mutex_);
  return std::exchange(error_, nullptr);
}

MaintenancePool::Stats MaintenancePool::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

size_t MaintenancePool::queued() const {
  std::lock_guard lock(mutex_);
  return queue_.size();
}

namespace {

// CPU time the calling thread has used (a job's share, against its wall time: Stats).
double thread_cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

// The calling thread takes SCHED_IDLE when RA_MAINTENANCE_IDLE=1. Lowering a thread's priority needs no
// privilege; should the kernel refuse anyway, the thread keeps its priority (and says so once).
void lower_to_idle_priority() {
  const char* v = std::getenv("RA_MAINTENANCE_IDLE");
  if (v == nullptr || std::strcmp(v, "1") != 0) return;
  sched_param param{};
  if (const int err = pthread_setschedparam(pthread_self(), SCHED_IDLE, &param); err != 0) {
    static std::once_flag warned;
    std::call_once(warned, [err] {
      std::fprintf(stderr, "maintenance pool: cannot run at idle priority (%s); merges keep normal priority\n",
                   std::strerror(err));
    });
  }
}

}  // namespace

void MaintenancePool::work() {
  lower_to_idle_priority();
  std::unique_lock lock(mutex_);
  for (;;) {
    has_work_.wait(lock, [&] { return closing_ || !queue_.empty(); });
    if (queue_.empty()) return;  // closing, and nothing left to finish
    Entry e = std::move(queue_.front());
    queue_.pop_front();
    ++running_;
    lock.unlock();
    const auto wall0 = std::chrono::steady_clock::now();
    const double cpu0 = thread_cpu_seconds();
    try {
      e.job.run();
    } catch (...) {
      std::lock_guard error_lock(mutex_);
      if (!error_) error_ = std::current_exception();
    }
    e = Entry{};  // the job's captures die before the owner can be told it is idle
    const double cpu = thread_cpu_seconds() - cpu0;
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall0).count();
    lock.lock();
    ++stats_.jobs;
    stats_.wall_seconds += wall;
    stats_.cpu_seconds += cpu;
    --running_;
    if (queue_.empty() && running_ == 0) idle_.notify_all();
  }
}

MaintenancePool& process_maintenance_pool() {
  static MaintenancePool* pool = new MaintenancePool();  // never destroyed: see the header
  return *pool;
}

}  // namespace ra::retriever
