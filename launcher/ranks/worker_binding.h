#pragma once
// The GPU worker's place on the machine (issue 21 item 3): with the CUDA backend its CPUs and memory go
// to the NUMA node its GPU hangs off, so the pinned staging buffers of every layer's round trip and the
// thread that drives them stay on the GPU's side of the socket link. The retrievers place themselves
// (RetrieverPlacement); the CPU backend's worker keeps every core for its own compute threads.

#include <string>

#include "launcher/plan/run_plan.h"

namespace ra {

// Binds the calling process as above where plan.config.bind_worker and the backend is CUDA; returns
// the line saying what it did (or why nothing: CPU backend, no NUMA node reported for the GPU, one node).
// Call before the worker starts threads that allocate host memory.
std::string bind_worker_near_gpu(const RunPlan& plan);

}  // namespace ra
