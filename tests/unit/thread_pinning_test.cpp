// pin_openmp_team: the team that later parallel regions of the same size reuse runs each thread on its
// one CPU; the report says what happened, also when there is nothing to pin.

#include "launcher/ranks/thread_pinning.h"

#include <gtest/gtest.h>
#include <omp.h>
#include <sched.h>

#include <string>
#include <vector>

namespace ra {
namespace {

std::vector<int> affinity_of_this_thread() {
  cpu_set_t set;
  CPU_ZERO(&set);
  std::vector<int> cpus;
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return cpus;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (CPU_ISSET(cpu, &set)) cpus.push_back(cpu);
  }
  return cpus;
}

TEST(ThreadPinning, EveryThreadOfTheReusedTeamKeepsItsCpu) {
  const std::vector<int> allowed = affinity_of_this_thread();
  ASSERT_FALSE(allowed.empty());
  // Two threads on the first allowed CPU and, where there is one, the second.
  const std::vector<int> cpus = {allowed.front(), allowed.size() > 1 ? allowed[1] : allowed.front()};
  std::string report;
  pin_openmp_team(cpus, 2, &report);
  const std::string used = cpus[0] == cpus[1] ? std::to_string(cpus[0]) + "," + std::to_string(cpus[1])
                                              : std::to_string(cpus[0]) + "-" + std::to_string(cpus[1]);
  EXPECT_EQ(report, "pinned 2 threads to cpus " + used);
  std::vector<std::vector<int>> seen(2);
  for (int round = 0; round < 3; ++round) {  // the same OS threads, region after region
#pragma omp parallel num_threads(2)
    seen[static_cast<size_t>(omp_get_thread_num())] = affinity_of_this_thread();
    EXPECT_EQ(seen[0], std::vector<int>{cpus[0]});
    EXPECT_EQ(seen[1], std::vector<int>{cpus[1]});
  }
}

TEST(ThreadPinning, NothingToPinIsSaid) {
  std::string report;
  pin_openmp_team({}, 4, &report);
  EXPECT_EQ(report, "threads not pinned (the plan gives no cpus)");
  const int cpu = affinity_of_this_thread().front();
  pin_openmp_team({cpu}, 1, nullptr);  // no report wanted: no crash
  pin_openmp_team({cpu, cpu + 1, cpu + 2}, 1, &report);
  EXPECT_EQ(report, "pinned 1 thread to cpu " + std::to_string(cpu)) << "only the cpus the team uses are named";
}

}  // namespace
}  // namespace ra
