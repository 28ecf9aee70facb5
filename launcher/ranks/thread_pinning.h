#pragma once
// Pinning a retriever's search threads to cores of its own (issue 21): the plan gives each retriever a
// run of its NUMA node's physical cores (RetrieverPlacement::cpus), and its searches run as an OpenMP
// team of `threads` threads started from the serving thread, which libgomp keeps and reuses for every
// parallel region of that size. Pinning that team once pins every search; a thread that stays on its
// core keeps its cache and never waits behind another retriever's thread.
//
// libgomp keeps a team only while its size holds: a parallel region with fewer threads releases the
// rest, and a larger one after it starts new threads, which inherit the caller's one CPU. So the
// serving thread's regions all use the pinned size (RetrieverService::on_step's search runs `threads`
// threads, serially when a layer has one work item), and anything that changes the size pins again
// (ra-bench-search does at every switch; measured on the GPU machine before it did: teams of 4-16
// regrown after a team of 2 ran 0.5-11% as fast as one pinned thread, docs/scaling.md).

#include <string>
#include <vector>

namespace ra {

// Pins the calling thread's OpenMP team of `threads` threads: team thread i (the caller is thread 0) to
// cpus[i % cpus.size()]. Threads started before keep their CPU set, and threads the caller starts
// afterwards inherit its one CPU: start every other thread first. Never throws; says what it did in
// *report (may be null): "pinned 4 threads to cpus 0-3" (the cpus used), or why not. Returns whether
// every thread of the team was pinned.
bool pin_openmp_team(const std::vector<int>& cpus, int threads, std::string* report);

}  // namespace ra
