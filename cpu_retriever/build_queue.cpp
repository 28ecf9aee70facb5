#include "cpu_retriever/build_queue.h"

#include <algorithm>
#include <utility>

namespace ra::retriever {

BuildQueue::BuildQueue(BuildFn build, int workers, std::function<void()> on_worker_start)
    : build_(std::move(build)) {
  for (int i = 0; i < std::max(1, workers); ++i) {
    threads_.emplace_back([this, on_worker_start] { run(on_worker_start); });
  }
}

BuildQueue::~BuildQueue() {
  {
    std::lock_guard lock(mu_);
    closing_ = true;
    queue_.clear();
  }
  cv_.notify_all();
  for (std::thread& t : threads_) t.join();
}

void BuildQueue::submit(uint64_t seq, uint64_t key, std::vector<std::byte> payload) {
  {
    std::lock_guard lock(mu_);
    if (error_) return;  // the run stops at the failure: a build queued after it would never run
    queue_.push_back({next_order_++, seq, key, std::move(payload)});
  }
  cv_.notify_all();
}

bool BuildQueue::take_done(std::vector<FinishedBuild>& out) {
  std::lock_guard lock(mu_);
  while (releasable_locked()) {
    out.push_back(done_.begin()->second);
    done_.erase(done_.begin());
    ++next_release_;
  }
  if (error_) std::rethrow_exception(error_);
  return idle_locked();
}

bool BuildQueue::idle() const {
  std::lock_guard lock(mu_);
  return idle_locked();
}

void BuildQueue::wait_for_progress(std::chrono::microseconds timeout) {
  std::unique_lock lock(mu_);
  cv_.wait_for(lock, timeout, [&] { return releasable_locked() || error_ || idle_locked(); });
}

void BuildQueue::run(const std::function<void()>& on_start) {
  if (on_start) on_start();
  for (;;) {
    Job job;
    {
      std::unique_lock lock(mu_);
      // The first queued job whose key is not building (its earlier jobs of that key are done).
      auto ready = queue_.end();
      cv_.wait(lock, [&] {
        if (closing_) return true;
        if (error_) return false;
        ready = std::find_if(queue_.begin(), queue_.end(), [&](const Job& j) {
          return !running_keys_.contains(j.key) &&
                 std::none_of(queue_.begin(), queue_.end(), [&](const Job& e) { return e.key == j.key && e.order < j.order; });
        });
        return ready != queue_.end();
      });
      if (closing_) return;
      job = std::move(*ready);
      queue_.erase(ready);
      running_keys_.insert(job.key);
    }
    std::exception_ptr failure;
    transport::BuildDonePayload done{};
    try {
      done = build_(job.payload);
    } catch (...) {
      failure = std::current_exception();
    }
    {
      std::lock_guard lock(mu_);
      running_keys_.erase(running_keys_.find(job.key));
      if (failure && !error_) {
        error_ = failure;
        queue_.clear();
      }
      if (!failure && !error_) done_.emplace(job.order, FinishedBuild{job.seq, done});
    }
    cv_.notify_all();
  }
}

}  // namespace ra::retriever
