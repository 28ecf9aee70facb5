#include "gpu_worker/serve/job.h"

#include <utility>

namespace ra::serve {
namespace {

double seconds_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

}  // namespace

Job::Job(JobSpec spec) : spec_(std::move(spec)), admitted_(Clock::now()), started_(admitted_) {
  pending_.reserve(256);
}

void Job::started() {
  std::lock_guard lock(mutex_);
  started_ = Clock::now();
  result_.queue_seconds = seconds_between(admitted_, started_);
}

double Job::first_token() {
  std::lock_guard lock(mutex_);
  result_.first_token_seconds = seconds_between(admitted_, Clock::now());
  return result_.first_token_seconds;
}

void Job::append(std::string_view text) {
  if (text.empty()) return;
  {
    std::lock_guard lock(mutex_);
    pending_.append(text);
  }
  cv_.notify_one();
}

void Job::finish(const GenerationStats& stats) { end(&stats, nullptr); }

void Job::fail(const ApiError& error) { end(nullptr, &error); }

void Job::end(const GenerationStats* stats, const ApiError* error) {
  {
    std::lock_guard lock(mutex_);
    if (ended_) return;
    ended_ = true;
    if (stats) result_.stats = *stats;
    if (error) result_.error = *error;
  }
  cv_.notify_all();
}

bool Job::wait(std::string& out, Clock::time_point until) {
  std::unique_lock lock(mutex_);
  cv_.wait_until(lock, until, [&] { return ended_ || !pending_.empty(); });
  out.clear();
  out.swap(pending_);
  return ended_;
}

}  // namespace ra::serve
