#include "launcher/ranks/peer_links.h"

#include <fmt/format.h>

#include <map>

#include "common/error.h"

namespace ra {
namespace {

constexpr std::chrono::seconds kStartupTimeout{60};

// Flattens JSON into "a.b.c" -> value text, for a field-by-field comparison.
void flatten(const nlohmann::json& j, const std::string& prefix, std::map<std::string, std::string>& out) {
  if (j.is_object()) {
    for (const auto& [key, value] : j.items()) flatten(value, prefix.empty() ? key : prefix + "." + key, out);
  } else {
    out[prefix] = j.dump();
  }
}

std::string describe_differences(const std::string& root_text, const std::string& mine_text) {
  std::map<std::string, std::string> root, mine;
  flatten(nlohmann::json::parse(root_text), "", root);
  flatten(nlohmann::json::parse(mine_text), "", mine);
  std::string out;
  auto add = [&](const std::string& key, const std::string& a, const std::string& b) {
    if (!out.empty()) out += "; ";
    out += fmt::format("{}: rank 0 has {}, this rank has {}", key, a, b);
  };
  for (const auto& [key, value] : root) {
    const auto it = mine.find(key);
    if (it == mine.end()) {
      add(key, value, "nothing");
    } else if (it->second != value) {
      add(key, value, it->second);
    }
  }
  for (const auto& [key, value] : mine) {
    if (!root.contains(key)) add(key, "nothing", value);
  }
  return out.empty() ? "the plan texts differ" : out;
}

}  // namespace

std::string shm_segment_name(const RunPlan& plan, int rank) { return fmt::format("ra-{}-r{}", plan.job_id, rank); }

std::string rank_name(const RunPlan& plan, int rank) {
  if (rank == 0) return fmt::format("worker rank 0 on host {}", plan.worker_host);
  const auto& p = plan.retrievers.at(static_cast<size_t>(rank - 1));
  return fmt::format("retriever rank {} on host {}", rank, p.host);
}

void agree_on_plan(transport::MpiSession& mpi, const RunPlan& plan, const std::string& role) {
  const auto deadline = transport::deadline_after(kStartupTimeout);
  const std::string mine = canonical_plan_text(plan);
  const std::string root = mpi.broadcast(mine, "plan broadcast", deadline);
  std::string diff;
  if (root != mine) diff = describe_differences(root, mine);
  if (mpi.size() != plan.world_size && diff.empty()) {
    diff = fmt::format("world_size: the plan has {} ranks, mpirun started {}", plan.world_size, mpi.size());
  }
  const auto diffs = mpi.allgather(diff, "plan check", deadline);
  std::string report;
  for (int r = 0; r < mpi.size(); ++r) {
    if (!diffs[static_cast<size_t>(r)].empty()) {
      report += fmt::format("\n  rank {}: {}", r, diffs[static_cast<size_t>(r)]);
    }
  }
  if (!report.empty()) {
    raise("{} rank {} on host {}: the ranks of this job were given different plans, refusing to start:{}", role,
          mpi.rank(), mpi.host(), report);
  }
}

PeerLinks connect_peers(transport::MpiSession& mpi, const RunPlan& plan) {
  const bool shm = plan.config.transport == TransportKind::kShm;
  const auto kind = shm ? transport::LinkKind::kShm : transport::LinkKind::kUcx;
  RA_REQUIRE(transport::link_kind_built(kind), "{}",
             shm ? "this build has no shared-memory transport (Boost.Interprocess missing); use --transport ucx"
                 : "this build has no UCX transport (libucx-dev missing); use --transport shm");
  transport::LinkOptions o;
  o.kind = kind;
  o.segment_name = [&plan](int rank) { return shm_segment_name(plan, rank); };
  o.peer_name = [&plan](int rank) { return rank_name(plan, rank); };
  o.liveness_timeout = std::chrono::milliseconds(plan.config.liveness_timeout_ms);
  o.deadline = transport::deadline_after(kStartupTimeout);
  return transport::connect_links(mpi, o);
}

}  // namespace ra
