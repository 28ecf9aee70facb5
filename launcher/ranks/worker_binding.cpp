#include "launcher/ranks/worker_binding.h"

#include <fmt/format.h>

#include "common/error.h"
#include "gpu_worker/backend/backend.h"
#include "launcher/plan/numa_topology.h"

namespace ra {

std::string bind_worker_near_gpu(const RunPlan& plan) {
  if (!plan.config.bind_worker) return "binding: off (bind_worker: false)";
  BackendKind kind = BackendKind::kCpu;
  try {
    kind = resolve_backend_kind(plan.config.backend);
  } catch (const Error&) {
    return "binding: none (no CUDA device)";  // the backend's own error follows when it starts
  }
  if (kind != BackendKind::kCuda) return "binding: none (CPU backend: its threads use every core)";
  const std::string bus = gpu_pci_bus_id();
  if (bus.empty()) return "binding: none (the GPU's PCI bus id is unknown)";
  const int os_node = pci_device_numa_node(bus);
  if (os_node < 0) {
    return fmt::format("binding: none (GPU {}: the kernel reports no NUMA node for it, as on one-node "
                       "machines)", bus);
  }
  const NumaTopology topology = detect_numa_topology();
  const int index = numa_node_index(topology, os_node);
  if (index < 0) return fmt::format("binding: none (GPU {} is on NUMA node {}, which has no CPUs)", bus, os_node);
  std::string report;
  bind_this_process_to_numa_node(topology, index, &report);
  return fmt::format("near GPU {} on NUMA node {}: {}", bus, os_node, report);
}

}  // namespace ra
