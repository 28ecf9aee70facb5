#include "launcher/plan/numa_topology.h"

#include <fmt/format.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <thread>

#if RA_HAVE_HWLOC
#include <hwloc.h>
#endif

#include "launcher/plan/id_ranges.h"

namespace ra {
namespace {

void set_report(std::string* report, std::string text) {
  if (report != nullptr) *report = std::move(text);
}

// One node of the CPUs this process may run on; physical cores unknown, so one core per CPU.
NumaTopology single_node_fallback() {
  NumaTopology t;
  NumaTopology::Node node;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
      if (CPU_ISSET(cpu, &set)) node.cpus.push_back(cpu);
    }
  }
  if (node.cpus.empty()) {
    const unsigned n = std::max(1u, std::thread::hardware_concurrency());
    for (unsigned cpu = 0; cpu < n; ++cpu) node.cpus.push_back(static_cast<int>(cpu));
  }
  const long pages = sysconf(_SC_PHYS_PAGES), page_size = sysconf(_SC_PAGESIZE);
  node.memory_bytes = pages > 0 && page_size > 0 ? static_cast<uint64_t>(pages) * static_cast<uint64_t>(page_size) : 0;
  node.cores = static_cast<int>(node.cpus.size());
  node.core_cpus = node.cpus;
  t.total_cores = node.cores;
  t.nodes.push_back(std::move(node));
  return t;
}

#if RA_HAVE_HWLOC
struct Hwloc {
  hwloc_topology_t topology = nullptr;
  bool ok = false;
  Hwloc() {
    if (hwloc_topology_init(&topology) != 0) return;
    ok = hwloc_topology_load(topology) == 0;
  }
  ~Hwloc() {
    if (topology != nullptr) hwloc_topology_destroy(topology);
  }
  Hwloc(const Hwloc&) = delete;
  Hwloc& operator=(const Hwloc&) = delete;
};
#endif

}  // namespace

NumaTopology detect_numa_topology() {
#if RA_HAVE_HWLOC
  Hwloc h;
  if (!h.ok) return single_node_fallback();
  NumaTopology t;
  const int n = hwloc_get_nbobjs_by_type(h.topology, HWLOC_OBJ_NUMANODE);
  for (int i = 0; i < n; ++i) {
    hwloc_obj_t obj = hwloc_get_obj_by_type(h.topology, HWLOC_OBJ_NUMANODE, static_cast<unsigned>(i));
    if (obj == nullptr || obj->cpuset == nullptr || hwloc_bitmap_iszero(obj->cpuset)) continue;  // memory only
    NumaTopology::Node node;
    node.os_index = static_cast<int>(obj->os_index);
    unsigned cpu = 0;
    hwloc_bitmap_foreach_begin(cpu, obj->cpuset) { node.cpus.push_back(static_cast<int>(cpu)); }
    hwloc_bitmap_foreach_end();
    node.memory_bytes = obj->attr != nullptr ? obj->attr->numanode.local_memory : 0;
    for (hwloc_obj_t core = nullptr;
         (core = hwloc_get_next_obj_inside_cpuset_by_type(h.topology, obj->cpuset, HWLOC_OBJ_CORE, core)) != nullptr;) {
      const int first = hwloc_bitmap_first(core->cpuset);
      if (first >= 0) node.core_cpus.push_back(first);
    }
    std::sort(node.core_cpus.begin(), node.core_cpus.end());
    if (node.core_cpus.empty()) node.core_cpus = node.cpus;  // cores unknown: one per processing unit
    node.cores = static_cast<int>(node.core_cpus.size());
    t.total_cores += node.cores;
    t.nodes.push_back(std::move(node));
  }
  if (t.nodes.empty()) return single_node_fallback();
  return t;
#else
  return single_node_fallback();
#endif
}

std::string describe(const NumaTopology& t) {
  std::string out = fmt::format("{} NUMA node{}:", t.nodes.size(), t.nodes.size() == 1 ? "" : "s");
  for (size_t i = 0; i < t.nodes.size(); ++i) {
    const NumaTopology::Node& n = t.nodes[i];
    out += fmt::format("{} node {} ({} cores, cpus {}, {:.1f} GiB)", i ? "," : "", n.os_index, n.cores,
                       id_ranges(n.cpus), static_cast<double>(n.memory_bytes) / (1ull << 30));
  }
  return out;
}

void bind_this_process_to_numa_node(const NumaTopology& t, int node, std::string* report) {
  if (node < 0) {
    set_report(report, "NUMA binding: none (the plan leaves this process unbound)");
    return;
  }
  if (static_cast<size_t>(node) >= t.nodes.size()) {
    set_report(report, fmt::format("NUMA binding: none (the plan asks for node index {} but this host has {} "
                                   "node{})", node, t.nodes.size(), t.nodes.size() == 1 ? "" : "s"));
    return;
  }
  if (t.nodes.size() == 1) {
    set_report(report, "NUMA binding: none (one NUMA node)");
    return;
  }
#if RA_HAVE_HWLOC
  const NumaTopology::Node& want = t.nodes[static_cast<size_t>(node)];
  Hwloc h;
  if (!h.ok) {
    set_report(report, "NUMA binding: none (hwloc could not load the topology)");
    return;
  }
  hwloc_obj_t obj = nullptr;
  const int n = hwloc_get_nbobjs_by_type(h.topology, HWLOC_OBJ_NUMANODE);
  for (int i = 0; i < n && obj == nullptr; ++i) {
    hwloc_obj_t o = hwloc_get_obj_by_type(h.topology, HWLOC_OBJ_NUMANODE, static_cast<unsigned>(i));
    if (o != nullptr && static_cast<int>(o->os_index) == want.os_index) obj = o;
  }
  if (obj == nullptr) {
    set_report(report, fmt::format("NUMA binding: none (hwloc no longer sees node {})", want.os_index));
    return;
  }
  std::string cpu_result = fmt::format("cpus {}", id_ranges(want.cpus));
  if (hwloc_set_cpubind(h.topology, obj->cpuset, HWLOC_CPUBIND_PROCESS) != 0) {
    cpu_result = fmt::format("cpus not bound ({})", std::strerror(errno));
  }
  // Linux has no whole-process memory policy (hwloc answers ENOSYS); the calling thread's policy is
  // inherited by every thread it starts afterwards, which is why retrievers bind before starting any.
  std::string mem_result = "memory bound (process)";
  if (hwloc_set_membind(h.topology, obj->nodeset, HWLOC_MEMBIND_BIND,
                        HWLOC_MEMBIND_PROCESS | HWLOC_MEMBIND_BYNODESET) != 0) {
    mem_result = "memory bound (this thread and the threads it starts)";
    if (hwloc_set_membind(h.topology, obj->nodeset, HWLOC_MEMBIND_BIND,
                          HWLOC_MEMBIND_THREAD | HWLOC_MEMBIND_BYNODESET) != 0) {
      mem_result = fmt::format("memory not bound ({})", std::strerror(errno));
    }
  }
  set_report(report, fmt::format("NUMA binding: node {}: {}, {}", want.os_index, cpu_result, mem_result));
#else
  set_report(report, "NUMA binding: none (built without hwloc)");
#endif
}

int pci_device_numa_node(const std::string& bus_id, const std::string& sysfs) {
  unsigned domain = 0, bus = 0, device = 0, function = 0;
  if (std::sscanf(bus_id.c_str(), "%x:%x:%x.%x", &domain, &bus, &device, &function) != 4) return -1;
  const std::string path =
      fmt::format("{}/bus/pci/devices/{:04x}:{:02x}:{:02x}.{:x}/numa_node", sysfs, domain, bus, device, function);
  std::ifstream in(path);
  int node = -1;
  if (!(in >> node) || node < 0) return -1;
  return node;
}

int numa_node_index(const NumaTopology& topology, int os_index) {
  for (size_t i = 0; i < topology.nodes.size(); ++i) {
    if (topology.nodes[i].os_index == os_index) return static_cast<int>(i);
  }
  return -1;
}

}  // namespace ra
