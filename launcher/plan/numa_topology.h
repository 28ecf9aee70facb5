#pragma once
// The NUMA layout of this machine (hwloc), and binding a process to one node. Retrievers bind
// themselves (DESIGN §2: one process per NUMA node, memory allocated there, one thread per core).
// Built without hwloc (RA_HAVE_HWLOC unset), the machine is one node of all online CPUs and binding is
// a reported no-op.

#include <cstdint>
#include <string>
#include <vector>

namespace ra {

struct NumaTopology {
  struct Node {
    int os_index = 0;         // the kernel's node number (numactl -N)
    std::vector<int> cpus;    // OS indexes of its processing units (hyperthreads included), ascending
    std::vector<int> core_cpus;  // the first processing unit of each physical core, ascending
    uint64_t memory_bytes = 0;  // local memory; 0 when unknown
    int cores = 0;            // physical cores (each may hold several cpus)
  };
  std::vector<Node> nodes;    // nodes with at least one CPU, by os_index; never empty
  int total_cores = 0;        // physical cores over all nodes
};

// Never throws for lack of hwloc or an odd machine: it falls back to one node of all online CPUs. hwloc
// honours HWLOC_SYNTHETIC (e.g. "pack:2 numa:2 core:8 pu:2"), which the plan tests use to stand for
// machines this one is not.
NumaTopology detect_numa_topology();

// One line: "2 NUMA nodes: node 0 (16 cores, 32 cpus, 64.0 GiB), node 1 (...)".
std::string describe(const NumaTopology& topology);

// Binds the calling process's CPUs and memory policy to topology.nodes[node] (HWLOC_MEMBIND_BIND, the
// whole process where the OS allows, else the calling thread; on Linux memory policy is per thread and
// inherited by threads started later, so call this before starting any). Never fails hard: on a one-node machine, without hwloc, for a node this machine lacks
// (a plan made elsewhere), or when the OS refuses, it binds what it can and says what happened in
// *report (one line; report may be null).
void bind_this_process_to_numa_node(const NumaTopology& topology, int node, std::string* report);

// The NUMA node (the kernel's number) a PCI device hangs off, from `sysfs`/bus/pci/devices/<id>/numa_node;
// -1 when the kernel does not say (one-node machines and most VMs write -1) or the entry is missing.
// bus_id as CUDA or NVML print it: "0000:18:00.0", "00000000:18:00.0", any case.
int pci_device_numa_node(const std::string& bus_id, const std::string& sysfs = "/sys");

// Index into topology.nodes of the node with kernel number os_index; -1 when it has no such node.
int numa_node_index(const NumaTopology& topology, int os_index);

}  // namespace ra
