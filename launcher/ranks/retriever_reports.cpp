#include "launcher/ranks/retriever_reports.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>

#include "launcher/plan/id_ranges.h"

namespace ra {
namespace {

// Whether the plan's host name and the one a retriever's host gives itself name the same host: equal;
// the plan's "localhost" and the worker's own host; or one short name ("node1" and "node1.cluster").
bool same_host(const std::string& planned, const std::string& reported, const std::string& worker_host) {
  if (planned == reported) return true;
  if (planned == "localhost" || planned == "127.0.0.1") return reported == worker_host;
  const auto is_address = [](const std::string& h) { return !h.empty() && std::isdigit(static_cast<unsigned char>(h[0])); };
  if (is_address(planned) || is_address(reported)) return false;
  return planned.substr(0, planned.find('.')) == reported.substr(0, reported.find('.'));
}

std::string cores_text(const std::vector<int>& cpus) {
  if (cpus.empty()) return "no cores of its own";
  return fmt::format("core{} {}", cpus.size() == 1 ? "" : "s", id_ranges(cpus));
}

// "NUMA node 1 of 2 (8 cores each)", "unbound, 2 NUMA nodes (8 and 4 cores)".
std::string numa_text(const transport::RetrieverReport& r) {
  const std::vector<int>& cores = r.cores_per_node;
  if (cores.empty()) return "NUMA nodes unknown";
  std::string sizes;
  if (cores.size() == 1) {
    sizes = fmt::format("{} cores", cores[0]);
  } else if (std::all_of(cores.begin(), cores.end(), [&](int c) { return c == cores[0]; })) {
    sizes = fmt::format("{} cores each", cores[0]);
  } else {
    sizes = fmt::format("{} cores", fmt::join(cores, ", "));
  }
  if (r.numa_node < 0) return fmt::format("unbound, {} NUMA node{} ({})", cores.size(), cores.size() == 1 ? "" : "s", sizes);
  return fmt::format("NUMA node {} of {} ({})", r.numa_node, cores.size(), sizes);
}

}  // namespace

transport::RetrieverReport make_retriever_report(const RunPlan& plan, int rank, const std::string& host,
                                                 const NumaTopology& here, const RetrieverPlacement& place,
                                                 const std::string& binding, bool pinned) {
  transport::RetrieverReport r;
  r.rank = rank;
  r.host = host;
  r.pid = static_cast<int64_t>(getpid());
  r.transport = std::string(name(plan.config.transport));
  for (const NumaTopology::Node& node : here.nodes) r.cores_per_node.push_back(node.cores);
  r.numa_node = place.numa_node;
  r.binding = binding;
  r.cpus = place.cpus;
  r.threads = place.threads;
  r.pinned = pinned;
  return r;
}

std::vector<std::string> describe_retriever_reports(const RunPlan& plan,
                                                    const std::vector<transport::RetrieverReport>& reports,
                                                    const std::string& worker_host) {
  std::vector<std::string> lines, warnings;
  for (size_t i = 0; i < reports.size(); ++i) {
    const transport::RetrieverReport& r = reports[i];
    const int rank = static_cast<int>(i) + 1;
    std::string line = fmt::format("retriever rank {} on host {} (pid {}): {}, {}, {} thread{} {}", rank, r.host,
                                   r.pid, numa_text(r), cores_text(r.cpus), r.threads, r.threads == 1 ? "" : "s",
                                   r.pinned ? "pinned" : "unpinned");
    if (!r.transport.empty()) line += fmt::format(", over {}", r.transport);
    if (i < plan.retrievers.size()) {  // the launcher's guess, made on its own machine
      const RetrieverPlacement& p = plan.retrievers[i];
      std::vector<std::string> guess;
      if (r.rank != 0 && r.rank != p.rank) guess.push_back(fmt::format("rank {}", p.rank));
      if (!same_host(p.host, r.host, worker_host)) guess.push_back(fmt::format("host {}", p.host));
      if (p.numa_node != r.numa_node) {
        guess.push_back(p.numa_node < 0 ? std::string("unbound") : fmt::format("NUMA node {}", p.numa_node));
      }
      if (p.cpus != r.cpus) guess.push_back(cores_text(p.cpus));
      if (p.threads != r.threads) guess.push_back(fmt::format("{} thread{}", p.threads, p.threads == 1 ? "" : "s"));
      if (!guess.empty()) line += fmt::format("; the report overrides the plan's guess ({})", fmt::join(guess, ", "));
    }
    lines.push_back(std::move(line));
    const int cores = r.node_cores();
    if (cores > 0 && r.threads > cores) {
      warnings.push_back(fmt::format(
          "warning: retriever rank {} on host {} runs {} search threads on the {} cores of its {}: threads share "
          "cores (retriever_threads {}; 0 sizes each retriever by its own host)",
          rank, r.host, r.threads, cores,
          r.numa_node >= 0 ? fmt::format("NUMA node {}", r.numa_node) : std::string("host"),
          plan.config.retriever_threads));
    }
  }
  lines.insert(lines.end(), warnings.begin(), warnings.end());
  return lines;
}

}  // namespace ra
