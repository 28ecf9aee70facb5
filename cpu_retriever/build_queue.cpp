#include "cpu_retriever/build_queue.h"

#include <utility>

namespace ra::retriever {

BuildQueue::BuildQueue(BuildFn build) : build_(std::move(build)) {
  thread_ = std::thread([this] { run(); });
}

BuildQueue::~BuildQueue() {
  {
    std::lock_guard lock(mu_);
    closing_ = true;
    queue_.clear();
  }
  cv_.notify_all();
  thread_.join();
}

void BuildQueue::submit(uint64_t seq, std::vector<std::byte> payload) {
  {
    std::lock_guard lock(mu_);
    if (error_) return;  // the run stops at the failure: a build queued after it would never run
    queue_.emplace_back(seq, std::move(payload));
  }
  cv_.notify_all();
}

bool BuildQueue::take_done(std::vector<FinishedBuild>& out) {
  std::lock_guard lock(mu_);
  out.insert(out.end(), done_.begin(), done_.end());
  done_.clear();
  if (error_) std::rethrow_exception(error_);
  return queue_.empty() && !building_;
}

bool BuildQueue::idle() const {
  std::lock_guard lock(mu_);
  return queue_.empty() && !building_;
}

void BuildQueue::wait_for_progress(std::chrono::microseconds timeout) {
  std::unique_lock lock(mu_);
  cv_.wait_for(lock, timeout, [&] { return !done_.empty() || error_ || (queue_.empty() && !building_); });
}

void BuildQueue::run() {
  for (;;) {
    std::pair<uint64_t, std::vector<std::byte>> job;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return closing_ || (!queue_.empty() && !error_); });
      if (closing_) return;
      job = std::move(queue_.front());
      queue_.pop_front();
      building_ = true;
    }
    try {
      const transport::BuildDonePayload done = build_(job.second);
      std::lock_guard lock(mu_);
      done_.push_back({job.first, done});
      building_ = false;
    } catch (...) {
      std::lock_guard lock(mu_);
      error_ = std::current_exception();
      queue_.clear();
      building_ = false;
    }
    cv_.notify_all();
  }
}

}  // namespace ra::retriever
