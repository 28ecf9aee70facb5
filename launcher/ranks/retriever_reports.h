#pragma once
// What each retriever says of itself at the handshake (issue 21 item 2; transport::RetrieverReport):
// the launcher plans every host as if it were its own machine, each retriever redoes its placement from
// its own host's topology (placed_on_this_host), and the worker learns the outcome from the kHelloAck.
// Here the retriever's side builds the report, and the worker's side turns the reports into log lines
// beside the plan's guess.

#include <string>
#include <vector>

#include "launcher/plan/numa_topology.h"
#include "launcher/plan/run_plan.h"
#include "transport/hello.h"

namespace ra {

// Retriever `rank`'s report from what its process found and did on `host`: the topology `here`, its
// placement there (placed_on_this_host), the line its NUMA binding returned, and whether its search
// threads were pinned. threads is the placement's; the service replaces it with its team's size.
transport::RetrieverReport make_retriever_report(const RunPlan& plan, int rank, const std::string& host,
                                                 const NumaTopology& here, const RetrieverPlacement& place,
                                                 const std::string& binding, bool pinned);

// The worker's lines, one per retriever (reports[i] is retriever rank 1 + i of `plan`), then a warning
// for each retriever with more search threads than cores on its NUMA node (its host when unbound):
//   retriever rank 2 on host cpu1 (pid 4242): NUMA node 1 of 2 (8 cores each), cores 8-11, 4 threads
//   pinned, over ucx; the report overrides the plan's guess (host localhost, NUMA node 0, cores 0-3)
//   warning: retriever rank 2 on host cpu1 runs 12 search threads on the 8 cores of its NUMA node 1: ...
// The overriding clause lists what the plan said where it differs from the report (host, NUMA node,
// cores, threads). worker_host is the worker's own host name, which a plan's "localhost" stands for.
std::vector<std::string> describe_retriever_reports(const RunPlan& plan,
                                                    const std::vector<transport::RetrieverReport>& reports,
                                                    const std::string& worker_host);

}  // namespace ra
