#include "launcher/ranks/thread_pinning.h"

#include <omp.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "launcher/plan/id_ranges.h"

namespace ra {

bool pin_openmp_team(const std::vector<int>& cpus, int threads, std::string* report) {
  std::string text;
  bool pinned = false;
  if (cpus.empty() || threads < 1) {
    text = "threads not pinned (the plan gives no cpus)";
  } else {
    std::atomic<int> failed{0}, first_errno{0}, team{0};
    const auto n = static_cast<int>(cpus.size());
#pragma omp parallel num_threads(threads)
    {
      const int t = omp_get_thread_num();
      if (t == 0) team.store(omp_get_num_threads());
      cpu_set_t set;
      CPU_ZERO(&set);
      CPU_SET(cpus[static_cast<size_t>(t % n)], &set);
      if (sched_setaffinity(0, sizeof(set), &set) != 0) {
        int none = 0;
        first_errno.compare_exchange_strong(none, errno);
        failed.fetch_add(1);
      }
    }
    pinned = failed.load() == 0;
    const int used = std::min(team.load(), n);
    const std::vector<int> on(cpus.begin(), cpus.begin() + used);
    text = failed.load() == 0
               ? fmt::format("pinned {} thread{} to cpu{} {}", team.load(), team.load() == 1 ? "" : "s",
                             used == 1 ? "" : "s", id_ranges(on))
               : fmt::format("threads not pinned: {} of {} could not be ({})", failed.load(), team.load(),
                             std::strerror(first_errno.load()));
  }
  if (report != nullptr) *report = std::move(text);
  return pinned;
}

}  // namespace ra
