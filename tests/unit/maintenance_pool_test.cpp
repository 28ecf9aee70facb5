// MaintenancePool: the bounded pool that runs index maintenance (tail merges) of a retriever process.
// Threads fixed at construction, a bounded queue, errors kept for the owner, shutdown that finishes
// or cancels what is queued, and per-owner cancellation.

#include "cpu_retriever/maintenance_pool.h"

#include "common/error.h"

#include <gtest/gtest.h>
#include <sched.h>
#include <time.h>
#include <cstdlib>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

namespace ra::retriever {
namespace {

// A gate jobs can wait on, so a test can hold the pool's threads busy.
class Gate {
 public:
  void open() {
    std::lock_guard lock(mutex_);
    open_ = true;
    cv_.notify_all();
  }
  void wait() {
    std::unique_lock lock(mutex_);
    cv_.wait(lock, [&] { return open_; });
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  bool open_ = false;
};

TEST(MaintenancePool, RunsEveryJobOnItsFixedThreads) {
  MaintenancePool pool(3, 1000);
  EXPECT_EQ(pool.threads(), 3);
  std::mutex mutex;
  std::set<std::thread::id> ids;
  std::atomic<int> running{0}, most{0}, done{0};
  for (int i = 0; i < 200; ++i) {
    ASSERT_EQ(pool.submit(nullptr, {[&] {
                const int now = running.fetch_add(1) + 1;
                int seen = most.load();
                while (now > seen && !most.compare_exchange_weak(seen, now)) {
                }
                {
                  std::lock_guard lock(mutex);
                  ids.insert(std::this_thread::get_id());
                }
                std::this_thread::sleep_for(std::chrono::microseconds(200));
                running.fetch_sub(1);
                done.fetch_add(1);
              }}),
              MaintenancePool::Submitted::kQueued);
  }
  pool.wait_idle();
  EXPECT_EQ(done.load(), 200);
  EXPECT_LE(most.load(), 3);
  EXPECT_LE(ids.size(), 3u);
  EXPECT_FALSE(ids.count(std::this_thread::get_id()));  // never on the submitting thread
}

// RA_MAINTENANCE_IDLE=1 runs the merges at idle priority; by default they keep the normal one.
int policy_of_a_pool_thread() {
  MaintenancePool pool(1);
  std::promise<int> policy;
  EXPECT_EQ(pool.submit(nullptr, {[&] { policy.set_value(sched_getscheduler(0)); }, nullptr}),
            MaintenancePool::Submitted::kQueued);
  return policy.get_future().get();
}

TEST(MaintenancePool, ThreadsRunAtIdlePriorityOnlyWhenAsked) {
  unsetenv("RA_MAINTENANCE_IDLE");
  EXPECT_EQ(policy_of_a_pool_thread(), SCHED_OTHER);
  setenv("RA_MAINTENANCE_IDLE", "1", 1);
  EXPECT_EQ(policy_of_a_pool_thread(), SCHED_IDLE);
  unsetenv("RA_MAINTENANCE_IDLE");
}

TEST(MaintenancePool, QueueIsBounded) {
  MaintenancePool pool(1, 2);
  Gate gate;
  std::promise<void> started;
  ASSERT_EQ(pool.submit(nullptr, {[&] {
              started.set_value();
              gate.wait();
            }}),
            MaintenancePool::Submitted::kQueued);
  started.get_future().wait();  // the thread is busy: what follows waits in the queue
  std::atomic<int> ran{0};
  EXPECT_EQ(pool.submit(nullptr, {[&] { ++ran; }}), MaintenancePool::Submitted::kQueued);
  EXPECT_EQ(pool.submit(nullptr, {[&] { ++ran; }}), MaintenancePool::Submitted::kQueued);
  EXPECT_EQ(pool.submit(nullptr, {[&] { ++ran; }}), MaintenancePool::Submitted::kFull);
  EXPECT_EQ(pool.queued(), 2u);
  gate.open();
  pool.wait_idle();
  EXPECT_EQ(ran.load(), 2);
  EXPECT_EQ(pool.submit(nullptr, {[&] { ++ran; }}), MaintenancePool::Submitted::kQueued);  // room again
  pool.wait_idle();
  EXPECT_EQ(ran.load(), 3);
}

TEST(MaintenancePool, AJobsErrorIsKeptAndThePoolGoesOn) {
  MaintenancePool pool(2, 16);
  EXPECT_EQ(pool.take_error(), nullptr);
  pool.submit(nullptr, {[] { throw std::runtime_error("merge failed: out of memory"); }});
  pool.wait_idle();
  pool.submit(nullptr, {[] { throw std::runtime_error("a second failure"); }});
  pool.wait_idle();
  std::exception_ptr e = pool.take_error();
  ASSERT_NE(e, nullptr);
  try {
    std::rethrow_exception(e);
  } catch (const std::runtime_error& err) {
    EXPECT_STREQ(err.what(), "merge failed: out of memory");  // the first one
  }
  EXPECT_EQ(pool.take_error(), nullptr);  // taken once
  std::atomic<bool> ran{false};
  pool.submit(nullptr, {[&] { ran = true; }});
  pool.wait_idle();
  EXPECT_TRUE(ran.load());
}

// Holds the pool's only thread, queues `n` jobs that count runs and cancellations, and returns.
struct Blocked {
  Gate gate;
  std::atomic<int> ran{0}, cancelled{0};
  void fill(MaintenancePool& pool, int n, const void* owner = nullptr) {
    std::promise<void> started;
    pool.submit(nullptr, {[&] {
      started.set_value();
      gate.wait();
    }});
    started.get_future().wait();
    for (int i = 0; i < n; ++i) {
      ASSERT_EQ(pool.submit(owner, {[&] { ++ran; }, [&] { ++cancelled; }}), MaintenancePool::Submitted::kQueued);
    }
  }
};

TEST(MaintenancePool, ShutdownFinishesTheQueueWhenAsked) {
  MaintenancePool pool(1, 16);
  Blocked b;
  b.fill(pool, 5);
  std::thread opener([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    b.gate.open();
  });
  pool.shutdown(true);
  opener.join();
  EXPECT_EQ(b.ran.load(), 5);
  EXPECT_EQ(b.cancelled.load(), 0);
  EXPECT_EQ(pool.submit(nullptr, {[] {}}), MaintenancePool::Submitted::kClosed);
  pool.shutdown(true);  // idempotent
}

TEST(MaintenancePool, ShutdownCancelsTheQueueOtherwise) {
  Blocked b;
  {
    MaintenancePool pool(1, 16);
    b.fill(pool, 5);
    // The only thread is held at the gate, so only the shutdown can empty the queue; then the running
    // job may finish, and the queued ones never start.
    std::thread stopper([&] { pool.shutdown(false); });
    while (pool.queued() > 0) std::this_thread::yield();
    b.gate.open();
    stopper.join();
    EXPECT_EQ(pool.submit(nullptr, {[] {}}), MaintenancePool::Submitted::kClosed);
  }  // the destructor after an explicit shutdown
  EXPECT_EQ(b.ran.load(), 0);
  EXPECT_EQ(b.cancelled.load(), 5);
}

TEST(MaintenancePool, CancelDropsOneOwnersQueuedJobs) {
  MaintenancePool pool(1, 16);
  const int a = 0, b_owner = 0;
  Blocked mine, theirs;
  mine.fill(pool, 3, &a);
  for (int i = 0; i < 2; ++i) {
    pool.submit(&b_owner, {[&] { ++theirs.ran; }, [&] { ++theirs.cancelled; }});
  }
  EXPECT_EQ(pool.cancel(&a), 3u);
  EXPECT_EQ(pool.cancel(&a), 0u);
  mine.gate.open();
  pool.wait_idle();
  EXPECT_EQ(mine.ran.load(), 0);
  EXPECT_EQ(mine.cancelled.load(), 3);
  EXPECT_EQ(theirs.ran.load(), 2);
  EXPECT_EQ(theirs.cancelled.load(), 0);
}

TEST(MaintenancePool, DefaultsAndTheProcessPool) {
  EXPECT_GE(MaintenancePool::default_threads(), 1);
  EXPECT_LE(MaintenancePool::default_threads(), std::max(1u, std::thread::hardware_concurrency()));
  MaintenancePool& p = process_maintenance_pool();
  EXPECT_EQ(&p, &process_maintenance_pool());
  EXPECT_EQ(p.threads(), MaintenancePool::default_threads());
  EXPECT_THROW(MaintenancePool(-1, 4), ra::Error);
  EXPECT_THROW(MaintenancePool(1, 0), ra::Error);
}

// The pool counts its jobs and their time: the CPU time of a job that computes (until its thread has
// used 40 ms of CPU, however loaded the machine), not of one that sleeps 60 ms.
TEST(MaintenancePool, CountsJobsAndTheirCpuTime) {
  MaintenancePool pool(1);
  const auto thread_cpu = [] {
    timespec t{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
  };
  std::atomic<uint64_t> sink{0};
  ASSERT_EQ(pool.submit(nullptr, {[&] {
              const double start = thread_cpu();
              uint64_t x = 1;
              while (thread_cpu() - start < 0.04) x = x * 6364136223846793005ull + 1;
              sink.store(x);
            }}),
            MaintenancePool::Submitted::kQueued);
  ASSERT_EQ(pool.submit(nullptr, {[] { std::this_thread::sleep_for(std::chrono::milliseconds(60)); }}),
            MaintenancePool::Submitted::kQueued);
  pool.wait_idle();
  const MaintenancePool::Stats s = pool.stats();
  EXPECT_EQ(s.jobs, 2);
  EXPECT_GE(s.cpu_seconds, 0.04);
  EXPECT_LT(s.cpu_seconds, 0.04 + 0.02);  // the sleeping job costs next to no CPU
  EXPECT_GE(s.wall_seconds, 0.04 + 0.06);
}

}  // namespace
}  // namespace ra::retriever
