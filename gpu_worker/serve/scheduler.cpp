#include "gpu_worker/serve/scheduler.h"

#include "gpu_worker/serve/job_runner.h"

namespace ra::serve {
namespace {

// How long the decode thread waits for a job before it looks at the stop flag again.
constexpr std::chrono::milliseconds kIdlePoll{100};

}  // namespace

Scheduler::Scheduler(ServedModel& model, Metrics& metrics, size_t capacity)
    : model_(model), metrics_(metrics), queue_(capacity), thread_([this] { loop(); }) {}

Scheduler::~Scheduler() { stop(); }

bool Scheduler::submit(const std::shared_ptr<Job>& job) {
  if (stopping_.load()) return false;
  if (!queue_.try_push(job)) return false;
  metrics_.queue_depth->Set(static_cast<double>(queue_.size()));
  return true;
}

void Scheduler::end_unstarted(Job& job) {
  GenerationStats stats;
  stats.finish = FinishReason::kCancelled;
  job.finish(stats);
  metrics_.count_request(job.spec().endpoint, Outcome::kCancelled);
}

void Scheduler::withdraw(const std::shared_ptr<Job>& job) {
  if (!queue_.remove(job)) return;
  metrics_.queue_depth->Set(static_cast<double>(queue_.size()));
  end_unstarted(*job);
}

void Scheduler::loop() {
  while (!stopping_.load()) {
    std::optional<std::shared_ptr<Job>> job = queue_.pop_until(Clock::now() + kIdlePoll);
    if (!job) {
      if (!stopping_.load()) model_.engine->idle();
      continue;
    }
    metrics_.queue_depth->Set(static_cast<double>(queue_.size()));
    {
      std::lock_guard lock(running_mutex_);
      running_ = *job;
    }
    if (stopping_.load()) (*job)->cancel();
    metrics_.running->Set(1);
    run_job(**job, model_, metrics_);
    metrics_.running->Set(0);
    std::lock_guard lock(running_mutex_);
    running_.reset();
  }
}

void Scheduler::stop() {
  std::lock_guard stop_lock(stop_mutex_);
  stopping_.store(true);
  for (const std::shared_ptr<Job>& job : queue_.close()) {
    job->cancel();
    end_unstarted(*job);
  }
  metrics_.queue_depth->Set(0);
  {
    std::lock_guard lock(running_mutex_);
    if (running_) running_->cancel();
  }
  if (thread_.joinable()) thread_.join();
}

}  // namespace ra::serve
