// The run plan: (layer, kv_head) sharding, GQA query heads, NUMA placement, threads and their cores (on
// synthetic hwloc topologies too), hostfiles, the shm-needs-one-host rule, the plan file and its digest,
// and the mpirun command line.

#include <gmock/gmock.h>
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "common/error.h"
#include "gpu_worker/model/model_config.h"
#include "launcher/plan/mpirun_command.h"
#include "launcher/plan/numa_topology.h"
#include "launcher/plan/run_plan.h"
#include "tests/support/error_message.h"
#include "tests/support/temp_dir.h"

namespace ra {
namespace {

namespace fs = std::filesystem;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

Geometry llama3_8b() { return {32, 32, 8, 128, 0.08838834764831845f, "BF16"}; }

NumaTopology topology(int nodes, int cores_per_node) {
  NumaTopology t;
  for (int n = 0; n < nodes; ++n) {
    NumaTopology::Node node;
    node.os_index = n;
    for (int c = 0; c < cores_per_node; ++c) node.cpus.push_back(n * cores_per_node + c);
    node.core_cpus = node.cpus;
    node.memory_bytes = 1ull << 34;
    node.cores = cores_per_node;
    t.nodes.push_back(node);
    t.total_cores += cores_per_node;
  }
  return t;
}

RunConfig retrieval(int retrievers) {
  RunConfig c;
  c.mode = AttentionMode::kRetrieval;
  c.retrievers = retrievers;
  return c;
}

using test::error_message;

TEST(RunPlanSharding, EveryUnitOwnedOnceAndLayersSpread) {
  for (const Geometry& g : {llama3_8b(), Geometry{4, 4, 2, 128, 0.088f, "BF16"}, Geometry{5, 8, 1, 64, 0.125f, "F32"},
                            Geometry{3, 12, 3, 64, 0.125f, "F16"}}) {
    for (int r : {1, 2, 3, 4, 5, 7, 8, 16}) {
      const RunPlan plan = make_run_plan(retrieval(r), g, topology(1, 4), {});
      ASSERT_EQ(plan.num_retrievers(), r);
      std::vector<int> units_of(static_cast<size_t>(r), 0);
      for (int64_t l = 0; l < g.n_layers; ++l) {
        std::set<int> owners;
        std::vector<int> seen(static_cast<size_t>(g.n_kv_heads), 0);
        for (int i = 0; i < r; ++i) {
          const std::vector<int64_t> heads = plan.owned_kv_heads(i, l);
          EXPECT_TRUE(std::is_sorted(heads.begin(), heads.end()));
          for (int64_t h : heads) {
            ++seen[static_cast<size_t>(h)];
            EXPECT_EQ(plan.owner(l, h), i);
          }
          if (!heads.empty()) owners.insert(i);
          units_of[static_cast<size_t>(i)] += static_cast<int>(heads.size());
        }
        for (int64_t h = 0; h < g.n_kv_heads; ++h) EXPECT_EQ(seen[static_cast<size_t>(h)], 1) << "layer " << l;
        EXPECT_EQ(static_cast<int64_t>(owners.size()), std::min<int64_t>(r, g.n_kv_heads))
            << "layer " << l << ", R " << r << ", kv heads " << g.n_kv_heads;
        for (int64_t h = 0; h < g.n_kv_heads; ++h) {
          EXPECT_EQ(plan.owner(l, h), (l * g.n_kv_heads + h) % r);
        }
      }
      // Round robin over all units balances the load within one unit.
      const auto [lo, hi] = std::minmax_element(units_of.begin(), units_of.end());
      EXPECT_LE(*hi - *lo, 1) << "R " << r;
    }
  }
}

TEST(RunPlanSharding, QueryHeadsAreTheGqaGroups) {
  const RunPlan plan = make_run_plan(retrieval(3), llama3_8b(), topology(1, 4), {});
  // Layer 0: kv heads h with h % 3 == 0 -> 0, 3, 6; group size 4.
  EXPECT_THAT(plan.owned_kv_heads(0, 0), ElementsAre(0, 3, 6));
  EXPECT_THAT(plan.owned_query_heads(0, 0), ElementsAre(0, 1, 2, 3, 12, 13, 14, 15, 24, 25, 26, 27));
  // Layer 1: (8 + h) % 3 == 0 -> h = 1, 4, 7.
  EXPECT_THAT(plan.owned_kv_heads(0, 1), ElementsAre(1, 4, 7));
  for (int r = 0; r < 3; ++r) {
    for (int64_t l = 0; l < 32; ++l) {
      std::vector<int64_t> want;
      for (int64_t q = 0; q < 32; ++q) {
        if (plan.owner(l, q / 4) == r) want.push_back(q);  // query head q reads kv head q / group
      }
      EXPECT_EQ(plan.owned_query_heads(r, l), want);
    }
  }
}

TEST(RunPlanPlacement, FullAndWindowHaveNoRetrievers) {
  for (AttentionMode m : {AttentionMode::kFull, AttentionMode::kWindow}) {
    RunConfig c;
    c.mode = m;
    c.retrievers = 4;
    const RunPlan plan = make_run_plan(c, llama3_8b(), topology(2, 8), {});
    EXPECT_EQ(plan.world_size, 1);
    EXPECT_TRUE(plan.retrievers.empty());
    EXPECT_THAT(describe_plan(plan), HasSubstr("1 rank (1 GPU worker + 0 retrievers)"));
  }
}

TEST(RunPlanPlacement, SingleHostSpreadsOverNumaNodes) {
  const RunPlan plan = make_run_plan(retrieval(5), llama3_8b(), topology(2, 16), {});
  EXPECT_EQ(plan.world_size, 6);
  ASSERT_EQ(plan.num_retrievers(), 5);
  for (int i = 0; i < 5; ++i) {
    const RetrieverPlacement& r = plan.retrievers[static_cast<size_t>(i)];
    EXPECT_EQ(r.rank, 1 + i);
    EXPECT_EQ(r.host, "localhost");
    EXPECT_EQ(r.numa_node, i % 2);
    EXPECT_EQ(r.threads, r.numa_node == 0 ? 16 / 3 : 16 / 2);  // node 0 holds 3 retrievers, node 1 holds 2
  }
  EXPECT_EQ(plan.worker_host, "localhost");

  RunConfig fixed = retrieval(2);
  fixed.retriever_threads = 3;
  for (const RetrieverPlacement& r : make_run_plan(fixed, llama3_8b(), topology(2, 16), {}).retrievers) {
    EXPECT_EQ(r.threads, 3);
  }
  // More retrievers than cores: at least one thread each.
  for (const RetrieverPlacement& r : make_run_plan(retrieval(4), llama3_8b(), topology(1, 2), {}).retrievers) {
    EXPECT_EQ(r.threads, 1);
    EXPECT_EQ(r.numa_node, 0);
  }
}

// Machines this one is not, through hwloc's synthetic topologies: the plan's NUMA placement and its
// per-thread cores come from the topology detect_numa_topology reads.
class SyntheticTopology : public ::testing::Test {
 protected:
  NumaTopology load(const char* description) {
    setenv("HWLOC_SYNTHETIC", description, 1);
    NumaTopology t = detect_numa_topology();
    unsetenv("HWLOC_SYNTHETIC");
    return t;
  }
};

// Every retriever's cpus lie in its node, and no two retrievers share one.
void expect_disjoint_cores_of_their_nodes(const RunPlan& plan, const NumaTopology& t) {
  std::set<int> used;
  for (const RetrieverPlacement& r : plan.retrievers) {
    const std::vector<int>& node = t.nodes[static_cast<size_t>(r.numa_node)].core_cpus;
    EXPECT_FALSE(r.cpus.empty()) << "retriever rank " << r.rank;
    for (const int cpu : r.cpus) {
      EXPECT_NE(std::find(node.begin(), node.end(), cpu), node.end()) << "cpu " << cpu << " of rank " << r.rank;
      EXPECT_TRUE(used.insert(cpu).second) << "cpu " << cpu << " given twice";
    }
  }
}

TEST_F(SyntheticTopology, TwoSocketsOfTwoNumaNodesWithHyperthreads) {
  const NumaTopology t = load("pack:2 numa:2 core:4 pu:2");
  if (t.nodes.size() == 1) GTEST_SKIP() << "built without hwloc: the synthetic topology is not read";
  ASSERT_EQ(t.nodes.size(), 4u);
  EXPECT_EQ(t.total_cores, 16);
  for (size_t n = 0; n < 4; ++n) {
    EXPECT_EQ(t.nodes[n].cores, 4);
    EXPECT_EQ(t.nodes[n].cpus.size(), 8u);
    const int base = static_cast<int>(8 * n);  // the first hyperthread of each core, not its sibling
    EXPECT_EQ(t.nodes[n].core_cpus, (std::vector<int>{base, base + 2, base + 4, base + 6}));
  }
  // One retriever per NUMA node: a node's four cores each.
  const RunPlan four = make_run_plan(retrieval(4), llama3_8b(), t, {});
  for (int i = 0; i < 4; ++i) {
    const RetrieverPlacement& r = four.retrievers[static_cast<size_t>(i)];
    EXPECT_EQ(r.numa_node, i);
    EXPECT_EQ(r.threads, 4);
    EXPECT_EQ(r.cpus, t.nodes[static_cast<size_t>(i)].core_cpus);
  }
  expect_disjoint_cores_of_their_nodes(four, t);
  // Two per node: each takes half of its node's cores.
  const RunPlan eight = make_run_plan(retrieval(8), llama3_8b(), t, {});
  for (const RetrieverPlacement& r : eight.retrievers) {
    EXPECT_EQ(r.threads, 2);
    EXPECT_EQ(r.cpus.size(), 2u);
  }
  expect_disjoint_cores_of_their_nodes(eight, t);
  EXPECT_THAT(describe_plan(eight), HasSubstr("rank 5: retriever 4 on localhost, NUMA node 0, 2 threads pinned to cpus 4,6"));
}

TEST_F(SyntheticTopology, FourNumaNodes) {
  const NumaTopology t = load("numa:4 core:6 pu:1");
  if (t.nodes.size() == 1) GTEST_SKIP() << "built without hwloc: the synthetic topology is not read";
  ASSERT_EQ(t.nodes.size(), 4u);
  const RunPlan plan = make_run_plan(retrieval(4), llama3_8b(), t, {});
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(plan.retrievers[static_cast<size_t>(i)].numa_node, i);
    EXPECT_EQ(plan.retrievers[static_cast<size_t>(i)].threads, 6);
  }
  expect_disjoint_cores_of_their_nodes(plan, t);
  // Three retrievers on three of the nodes, a fourth idle; more threads than cores asked: its cores in turn.
  RunConfig fixed = retrieval(3);
  fixed.retriever_threads = 8;
  const RunPlan three = make_run_plan(fixed, llama3_8b(), t, {});
  for (const RetrieverPlacement& r : three.retrievers) {
    EXPECT_EQ(r.threads, 8);
    EXPECT_EQ(r.cpus.size(), 6u);
  }
  expect_disjoint_cores_of_their_nodes(three, t);
  // More retrievers than a node's cores: one core each, shared only when the node runs out.
  const RunPlan crowded = make_run_plan(retrieval(32), llama3_8b(), t, {});
  for (const RetrieverPlacement& r : crowded.retrievers) EXPECT_EQ(r.cpus.size(), 1u);
}

// A plan made on a one-node GPU machine for a hostfile whose retriever host has 2 sockets of 2 NUMA
// nodes: each retriever redoes its placement from the host it runs on.
TEST_F(SyntheticTopology, EachRetrieverPlacesItselfFromItsOwnHost) {
  const NumaTopology launcher = topology(1, 16);
  const NumaTopology big = load("pack:2 numa:2 core:4 pu:2");
  if (big.nodes.size() == 1) GTEST_SKIP() << "built without hwloc: the synthetic topology is not read";
  RunConfig c = retrieval(4);
  c.transport = TransportKind::kUcx;
  const RunPlan plan = make_run_plan(c, llama3_8b(), launcher, {{"gpu0", 1}, {"cpu1", 4}});
  for (const RetrieverPlacement& r : plan.retrievers) EXPECT_EQ(r.numa_node, 0);  // the launcher's guess
  RunPlan on_big = plan;
  for (int rank = 1; rank <= 4; ++rank) {
    const RetrieverPlacement here = placed_on_this_host(plan, rank, big);
    EXPECT_EQ(here.rank, rank);
    EXPECT_EQ(here.host, "cpu1");
    EXPECT_EQ(here.numa_node, rank - 1);
    EXPECT_EQ(here.threads, 4);
    EXPECT_EQ(here.cpus, big.nodes[static_cast<size_t>(rank - 1)].core_cpus);
    on_big.retrievers[static_cast<size_t>(rank - 1)] = here;
  }
  expect_disjoint_cores_of_their_nodes(on_big, big);
  // On the machine the plan was made for, the placement is the plan's.
  for (int rank = 1; rank <= 4; ++rank) {
    EXPECT_EQ(placed_on_this_host(plan, rank, launcher), plan.retrievers[static_cast<size_t>(rank - 1)]);
  }
  EXPECT_THAT(error_message([&] { placed_on_this_host(plan, 5, big); }), HasSubstr("rank 5 is not a retriever"));
}

TEST(RunPlanPlacement, ChecksConfigAndGeometry) {
  EXPECT_THAT(error_message([] { make_run_plan(retrieval(0), llama3_8b(), topology(1, 2), {}); }),
              HasSubstr("retrievers must be >= 1 in mode retrieval"));
  Geometry bad = llama3_8b();
  bad.n_kv_heads = 5;
  EXPECT_THAT(error_message([&] { make_run_plan(retrieval(1), bad, topology(1, 2), {}); }), HasSubstr("multiple"));
  bad = llama3_8b();
  bad.kv_dtype = "Q8";
  EXPECT_THAT(error_message([&] { make_run_plan(retrieval(1), bad, topology(1, 2), {}); }), HasSubstr("kv_dtype"));
}

TEST(RunPlanGeometry, FromModelConfig) {
  const ModelConfig c{.hidden_size = 512, .n_layers = 4, .n_heads = 4, .n_kv_heads = 2, .head_dim = 128};
  const Geometry g = make_geometry(c, "BF16");
  EXPECT_EQ(g, (Geometry{4, 4, 2, 128, c.attn_scale(), "BF16"}));
  EXPECT_EQ(make_geometry(c, "F16").kv_dtype, "F16");
  EXPECT_EQ(make_geometry(c, "F32").kv_dtype, "F32");
  EXPECT_EQ(make_geometry(c, "").kv_dtype, "F32");
}

class Hostfiles : public ::testing::Test {
 protected:
  std::string write(const std::string& text) {
    const fs::path file = dir_.path() / "hosts";
    std::ofstream(file, std::ios::trunc) << text;
    return file.string();
  }
  test::TempDir dir_;
};

TEST_F(Hostfiles, ParsesOpenMpiSyntax) {
  const std::string path = write(
      "# the cluster\n"
      "gpu0 slots=3   # the worker's host\n"
      "\n"
      "   cpu1 slots=2 max_slots=4\n"
      "cpu2\n"
      "gpu0 slots=1\n");
  EXPECT_THAT(read_hostfile(path), ElementsAre(HostSlots{"gpu0", 4}, HostSlots{"cpu1", 2}, HostSlots{"cpu2", 1}));
}

TEST_F(Hostfiles, ErrorsNameFileAndLine) {
  std::string p = write("a slots=2\nb slots=zero\n");
  EXPECT_THAT(error_message([&] { read_hostfile(p); }), AllOf(HasSubstr(p + ":2"), HasSubstr("slots")));
  p = write("a\nb cpus=4\n");
  EXPECT_THAT(error_message([&] { read_hostfile(p); }), AllOf(HasSubstr(p + ":2"), HasSubstr("cpus=4")));
  p = write("a slots=0\n");
  EXPECT_THAT(error_message([&] { read_hostfile(p); }), HasSubstr(p + ":1"));
  p = write("# nothing\n\n");
  EXPECT_THAT(error_message([&] { read_hostfile(p); }), AllOf(HasSubstr(p), HasSubstr("no hosts")));
  EXPECT_THAT(error_message([&] { read_hostfile((dir_.path() / "none").string()); }), HasSubstr("cannot open"));
}

TEST(RunPlanHosts, RetrieversFillSlotsInOrder) {
  RunConfig c = retrieval(5);
  c.transport = TransportKind::kUcx;
  c.hostfile = "hosts";
  const RunPlan plan = make_run_plan(c, llama3_8b(), topology(2, 8), {{"gpu0", 2}, {"cpu1", 2}, {"cpu2", 4}});
  EXPECT_EQ(plan.worker_host, "gpu0");
  std::vector<std::string> hosts;
  std::vector<int> nodes;
  for (const RetrieverPlacement& r : plan.retrievers) {
    hosts.push_back(r.host);
    nodes.push_back(r.numa_node);
  }
  EXPECT_THAT(hosts, ElementsAre("gpu0", "cpu1", "cpu1", "cpu2", "cpu2"));
  EXPECT_THAT(nodes, ElementsAre(0, 0, 1, 0, 1));  // NUMA nodes round robin within each host
  for (const RetrieverPlacement& r : plan.retrievers) EXPECT_EQ(r.threads, 8);

  EXPECT_THAT(error_message([&] { make_run_plan(c, llama3_8b(), topology(1, 8), {{"gpu0", 2}, {"cpu1", 2}}); }),
              AllOf(HasSubstr("4 slots"), HasSubstr("6 ranks")));
}

TEST(RunPlanHosts, ShmNeedsEveryRetrieverOnTheWorkersHost) {
  RunConfig c = retrieval(3);
  c.hostfile = "hosts";
  EXPECT_THAT(error_message([&] { make_run_plan(c, llama3_8b(), topology(1, 8), {{"gpu0", 2}, {"cpu1", 4}}); }),
              AllOf(HasSubstr("shm"), HasSubstr("cpu1"), HasSubstr("gpu0"), HasSubstr("--transport ucx")));
  const RunPlan ok = make_run_plan(c, llama3_8b(), topology(1, 8), {{"gpu0", 4}, {"cpu1", 4}});
  for (const RetrieverPlacement& r : ok.retrievers) EXPECT_EQ(r.host, "gpu0");
}

TEST(RunPlanFile, JsonRoundTripAndDigest) {
  RunConfig c = retrieval(3);
  c.prompt = "what is the number?";
  c.index.top_k = 64;
  const RunPlan plan = make_run_plan(c, llama3_8b(), topology(2, 8), {});
  EXPECT_EQ(plan.job_id.size(), 12u);
  const nlohmann::json j = plan_to_json(plan);
  EXPECT_EQ(j.at("format"), "ra-plan");
  EXPECT_EQ(j.at("version"), 2);

  // Through text, as the plan file travels.
  const RunPlan back = plan_from_json(nlohmann::json::parse(j.dump(2)), "plan.json");
  EXPECT_EQ(back.config, plan.config);
  EXPECT_EQ(back.geometry, plan.geometry);
  EXPECT_EQ(back.retrievers, plan.retrievers);
  EXPECT_EQ(back.job_id, plan.job_id);
  EXPECT_EQ(back.world_size, plan.world_size);
  EXPECT_EQ(back.worker_host, plan.worker_host);
  EXPECT_EQ(canonical_plan_text(back), canonical_plan_text(plan));
  EXPECT_EQ(plan_digest(back), plan_digest(plan));
  EXPECT_EQ(plan_digest(plan), plan_digest(plan));

  // Any change moves the digest.
  auto differs = [&](void (*change)(RunPlan&)) {
    RunPlan p = plan;
    change(p);
    return plan_digest(p) != plan_digest(plan);
  };
  EXPECT_TRUE(differs([](RunPlan& p) { p.job_id = "other"; }));
  EXPECT_TRUE(differs([](RunPlan& p) { p.config.index.top_k = 65; }));
  EXPECT_TRUE(differs([](RunPlan& p) { p.config.prompt += "!"; }));
  EXPECT_TRUE(differs([](RunPlan& p) { p.geometry.head_dim = 64; }));
  EXPECT_TRUE(differs([](RunPlan& p) { p.retrievers[1].threads = 1; }));
  EXPECT_TRUE(differs([](RunPlan& p) { p.retrievers[2].numa_node = -1; }));
  EXPECT_TRUE(differs([](RunPlan& p) { p.retrievers[0].cpus.push_back(99); }));
  // Two plans of one config differ by job id only.
  const RunPlan again = make_run_plan(c, llama3_8b(), topology(2, 8), {});
  EXPECT_NE(again.job_id, plan.job_id);
  RunPlan same = again;
  same.job_id = plan.job_id;
  EXPECT_EQ(canonical_plan_text(same), canonical_plan_text(plan));
}

TEST(RunPlanFile, DigestIsFnv1aOfTheCanonicalText) {
  const RunPlan plan = make_run_plan(retrieval(1), llama3_8b(), topology(1, 2), {});
  uint64_t h = 14695981039346656037ull;
  for (unsigned char ch : canonical_plan_text(plan)) h = (h ^ ch) * 1099511628211ull;
  EXPECT_EQ(plan_digest(plan), h);
}

TEST(RunPlanFile, BadPlansNameTheSource) {
  const RunPlan plan = make_run_plan(retrieval(2), llama3_8b(), topology(1, 2), {});
  auto broken = [&](void (*change)(nlohmann::json&)) {
    nlohmann::json j = plan_to_json(plan);
    change(j);
    return error_message([&] { plan_from_json(j, "p.json"); });
  };
  EXPECT_THAT(broken([](nlohmann::json& j) { j["version"] = 1; }), AllOf(HasSubstr("p.json"), HasSubstr("version 1")));
  EXPECT_THAT(broken([](nlohmann::json& j) { j["format"] = "x"; }), HasSubstr("not a plan file"));
  EXPECT_THAT(broken([](nlohmann::json& j) { j.erase("geometry"); }), HasSubstr("missing key 'geometry'"));
  EXPECT_THAT(broken([](nlohmann::json& j) { j["world_size"] = 5; }), HasSubstr("world_size 5"));
  EXPECT_THAT(broken([](nlohmann::json& j) { j["retrievers"][1]["rank"] = 7; }), HasSubstr("rank 7"));
  EXPECT_THAT(broken([](nlohmann::json& j) { j["config"]["sinks"] = "x"; }), AllOf(HasSubstr("p.json"), HasSubstr("'sinks'")));
  EXPECT_THAT(broken([](nlohmann::json& j) { j["config"]["bogus"] = 1; }), HasSubstr("unknown key 'bogus'"));
  EXPECT_THAT(broken([](nlohmann::json& j) { j["geometry"]["scale"] = "s"; }), HasSubstr("'scale'"));
}

TEST(RunPlanDescribe, NamesRanksHostsNodesAndShards) {
  const RunPlan plan = make_run_plan(retrieval(2), llama3_8b(), topology(2, 8), {});
  const std::string text = describe_plan(plan);
  EXPECT_THAT(text, AllOf(HasSubstr("mode retrieval"), HasSubstr("transport shm"), HasSubstr("3 ranks"),
                          HasSubstr(plan.job_id), HasSubstr("rank 0: GPU worker on localhost"),
                          HasSubstr("rank 1: retriever 0 on localhost, NUMA node 0, 8 threads"),
                          HasSubstr("rank 2: retriever 1 on localhost, NUMA node 1, 8 threads"),
                          HasSubstr("owns 128 of 256"), HasSubstr("every layer: kv heads 0,2,4,6")));
  // A period of several layers is shown per residue.
  const std::string three = describe_plan(make_run_plan(retrieval(3), llama3_8b(), topology(1, 8), {}));
  EXPECT_THAT(three, HasSubstr("layers 0 mod 3: kv heads 0,3,6; layers 1 mod 3: kv heads 1,4,7"));
}

TEST(Mpirun, MpmdLineWithoutHostfile) {
  RunConfig c = retrieval(2);
  c.mpirun_extra_args = {"-x", "UCX_TLS=sm"};
  const RunPlan plan = make_run_plan(c, llama3_8b(), topology(1, 2), {});
  // Every rank's environment goes with every app context (Open MPI gives a -x before the first context
  // to that context alone): the user's -x pairs first, then ours.
  const std::vector<std::string> argv = mpirun_argv(plan, "/tmp/p.json", "/bin/w", "/bin/r",
                                                    RankEnvironment{{"A=1"}, {"W=1"}, {"R=1"}}, false);
  EXPECT_THAT(argv, ElementsAre("mpirun", "--oversubscribe", "--bind-to", "none", "-n", "1", "-x", "UCX_TLS=sm", "-x",
                                "A=1", "-x", "W=1", "/bin/w", "--plan", "/tmp/p.json", ":", "-n", "1", "-x",
                                "UCX_TLS=sm", "-x", "A=1", "-x", "R=1", "/bin/r", "--plan", "/tmp/p.json", ":", "-n",
                                "1", "-x", "UCX_TLS=sm", "-x", "A=1", "-x", "R=1", "/bin/r", "--plan", "/tmp/p.json"));
  const std::vector<std::string> root = mpirun_argv(plan, "/tmp/p.json", "/bin/w", "/bin/r", {}, true);
  EXPECT_EQ(root[1], "--allow-run-as-root");
  EXPECT_EQ(std::count(root.begin(), root.end(), "--allow-run-as-root"), 1);
  // The default follows the real user.
  const std::vector<std::string> real = mpirun_argv(plan, "p", "w", "r");
  EXPECT_EQ(std::count(real.begin(), real.end(), "--allow-run-as-root"), running_as_root() ? 1 : 0);
}

TEST(Mpirun, OneAppContextPerRankWithItsHost) {
  RunConfig c = retrieval(3);
  c.transport = TransportKind::kUcx;
  c.hostfile = "/etc/hosts.mpi";
  c.mpirun = "/opt/bin/mpirun";
  c.mpirun_extra_args = {"--bind-to", "core"};
  const RunPlan plan = make_run_plan(c, llama3_8b(), topology(1, 4), {{"g", 2}, {"c", 2}});
  const std::vector<std::string> argv = mpirun_argv(plan, "plan.json", "w", "r", {}, false);
  EXPECT_THAT(argv, ElementsAre("/opt/bin/mpirun", "--oversubscribe", "--hostfile", "/etc/hosts.mpi", "--bind-to",
                                "core", "-n", "1", "--host", "g", "w", "--plan", "plan.json", ":", "-n", "1", "--host",
                                "g", "r", "--plan", "plan.json", ":", "-n", "1", "--host", "c", "r", "--plan",
                                "plan.json", ":", "-n", "1", "--host", "c", "r", "--plan", "plan.json"));
  EXPECT_EQ(std::count(argv.begin(), argv.end(), ":"), 3);
}

TEST(Mpirun, FullModeIsOneContext) {
  const RunPlan plan = make_run_plan(RunConfig{}, llama3_8b(), topology(1, 4), {});
  const std::vector<std::string> argv = mpirun_argv(plan, "p", "w", "r", {}, false);
  EXPECT_EQ(std::count(argv.begin(), argv.end(), ":"), 0);
  EXPECT_THAT(argv, Not(::testing::Contains("r")));
}

// The ranks' OpenMP threads spin only where they fit the CPUs of every host: a spinning thread on a
// shared CPU starves the peer it waits for.
TEST(OmpWaitPolicy, SpinsOnlyWhereEveryHostsRanksFitItsCpus) {
  const auto both = [](const std::string& p) { return OmpWaitPolicies{p, p}; };
  const auto eq = [](const OmpWaitPolicies& a, const OmpWaitPolicies& b) {
    return a.worker == b.worker && a.retriever == b.retriever;
  };
  RunConfig c = retrieval(1);
  const NumaTopology t16 = topology(1, 16);
  EXPECT_TRUE(eq(omp_wait_policies_for(make_run_plan(c, llama3_8b(), t16, {}), t16, false), both("PASSIVE")))
      << "the worker takes every CPU by default, so a retriever on the same host shares them";
  c.worker_threads = 8;
  c.retriever_threads = 8;
  EXPECT_TRUE(eq(omp_wait_policies_for(make_run_plan(c, llama3_8b(), t16, {}), t16, false), both("ACTIVE")));
  c.retriever_threads = 9;
  EXPECT_TRUE(eq(omp_wait_policies_for(make_run_plan(c, llama3_8b(), t16, {}), t16, false), both("PASSIVE")));

  // A GPU worker keeps one CPU busy: 15 search threads beside it fit, and every rank may spin.
  c.worker_threads = 0;
  c.retriever_threads = 15;
  EXPECT_TRUE(eq(omp_wait_policies_for(make_run_plan(c, llama3_8b(), t16, {}), t16, true), both("ACTIVE")));
  // 4 retrievers of 4 threads take all 16: the GPU worker's idle pool sleeps, the retrievers keep
  // libgomp's bounded spin ("": unset), as every GPU figure so far ran.
  RunConfig g = retrieval(4);
  g.retriever_threads = 4;
  EXPECT_TRUE(eq(omp_wait_policies_for(make_run_plan(g, llama3_8b(), t16, {}), t16, true),
                 (OmpWaitPolicies{"PASSIVE", ""})));
  g.retriever_threads = 5;  // 20 search threads on 16 CPUs: they share, so they sleep
  EXPECT_TRUE(eq(omp_wait_policies_for(make_run_plan(g, llama3_8b(), t16, {}), t16, true), both("PASSIVE")));

  // Two retrievers of 4 threads on a second host, the worker's 4 alone on the first: each host fits 4 CPUs
  // only where it holds at most 4 threads.
  RunConfig h = retrieval(2);
  h.transport = TransportKind::kUcx;
  h.hostfile = "/etc/hosts.mpi";
  h.worker_threads = 4;
  h.retriever_threads = 2;
  const RunPlan split = make_run_plan(h, llama3_8b(), topology(1, 4), {{"g", 1}, {"c", 2}});
  ASSERT_EQ(split.retrievers[0].host, "c");
  EXPECT_TRUE(eq(omp_wait_policies_for(split, topology(1, 4), false), both("ACTIVE")));
  h.retriever_threads = 3;
  EXPECT_TRUE(eq(omp_wait_policies_for(make_run_plan(h, llama3_8b(), topology(1, 4), {{"g", 1}, {"c", 2}}),
                                       topology(1, 4), false),
                 both("PASSIVE")))
      << "host c holds 6 threads on 4 CPUs";
}

// The retrievers spin between kSteps only where their service threads fit beside the worker's busy
// threads, and the worker does not spin where the searches take every CPU (docs/perf.md, twelfth round).
TEST(ShmSpinBudgets, FollowTheCpusLeft) {
  RunConfig c = retrieval(4);
  c.retriever_threads = 4;
  const RunPlan gpu_box = make_run_plan(c, llama3_8b(), topology(1, 16), {});
  ShmSpinBudgets b = shm_spin_budgets_for(gpu_box, topology(1, 16), true);
  EXPECT_EQ(b.retriever_us, kRetrieverSpinWithRoom) << "4 service threads beside the GPU worker's 1 on 16 CPUs";
  EXPECT_EQ(b.worker_us, 0) << "16 search threads leave no CPU for a spinning worker";

  b = shm_spin_budgets_for(gpu_box, topology(1, 16), false);
  EXPECT_FALSE(b.retriever_us) << "a CPU worker computes on every CPU by default";
  EXPECT_EQ(b.worker_us, 0);

  c.retriever_threads = 3;  // 12 search threads: a CPU is left for the worker's wait
  b = shm_spin_budgets_for(make_run_plan(c, llama3_8b(), topology(1, 16), {}), topology(1, 16), true);
  EXPECT_EQ(b.retriever_us, kRetrieverSpinWithRoom);
  EXPECT_FALSE(b.worker_us);

  c.worker_threads = 8;  // a CPU worker of 8 threads beside 4 service threads
  b = shm_spin_budgets_for(make_run_plan(c, llama3_8b(), topology(1, 16), {}), topology(1, 16), false);
  EXPECT_EQ(b.retriever_us, kRetrieverSpinWithRoom);
  c.worker_threads = 13;
  b = shm_spin_budgets_for(make_run_plan(c, llama3_8b(), topology(1, 16), {}), topology(1, 16), false);
  EXPECT_FALSE(b.retriever_us) << "13 + 4 > 16";

  // CI's machine: 2 CPUs, a CPU worker, 2 retrievers of 1 thread: nobody may spin long.
  RunConfig small = retrieval(2);
  b = shm_spin_budgets_for(make_run_plan(small, llama3_8b(), topology(1, 2), {}), topology(1, 2), false);
  EXPECT_FALSE(b.retriever_us);
  EXPECT_EQ(b.worker_us, 0);

  RunConfig ucx = retrieval(4);
  ucx.transport = TransportKind::kUcx;
  b = shm_spin_budgets_for(make_run_plan(ucx, llama3_8b(), topology(1, 16), {}), topology(1, 16), true);
  EXPECT_FALSE(b.retriever_us);
  EXPECT_FALSE(b.worker_us);
}

TEST(Mpirun, ShellQuoting) {
  EXPECT_EQ(shell_quote_join({"mpirun", "-x", "A=b,c", "/p/x.json"}), "mpirun -x A=b,c /p/x.json");
  EXPECT_EQ(shell_quote_join({"a b", "", "it's", "$HOME", "x;y"}), "'a b' '' 'it'\\''s' '$HOME' 'x;y'");
}

TEST(Numa, DetectsAtLeastOneNodeAndBindingNeverFailsHard) {
  const NumaTopology t = detect_numa_topology();
  ASSERT_FALSE(t.nodes.empty());
  int cores = 0;
  for (const NumaTopology::Node& n : t.nodes) {
    EXPECT_FALSE(n.cpus.empty());
    EXPECT_TRUE(std::is_sorted(n.cpus.begin(), n.cpus.end()));
    EXPECT_GE(n.cores, 1);
    EXPECT_LE(n.cores, static_cast<int>(n.cpus.size()));
    cores += n.cores;
  }
  EXPECT_EQ(t.total_cores, cores);
  EXPECT_THAT(describe(t), HasSubstr("NUMA node"));

  std::string report;
  bind_this_process_to_numa_node(t, -1, &report);
  EXPECT_THAT(report, HasSubstr("none"));
  bind_this_process_to_numa_node(t, static_cast<int>(t.nodes.size()) + 3, &report);
  EXPECT_THAT(report, HasSubstr("none"));
  if (t.nodes.size() == 1) {
    bind_this_process_to_numa_node(t, 0, &report);
    EXPECT_THAT(report, HasSubstr("one NUMA node"));
  }
  bind_this_process_to_numa_node(t, 0, nullptr);  // a null report is fine

  // The binding path itself, on any machine: a two-entry topology whose entries are both node 0.
  NumaTopology twice = t;
  twice.nodes.resize(1);
  twice.nodes.push_back(twice.nodes[0]);
  bind_this_process_to_numa_node(twice, 1, &report);
  EXPECT_THAT(report, ::testing::AnyOf(HasSubstr(fmt::format("node {}: cpus", t.nodes[0].os_index)),
                                       HasSubstr("built without hwloc")));
  EXPECT_THAT(report, Not(HasSubstr("cpus not bound")));
}

TEST(Numa, PlanOnTheRealMachine) {
  const NumaTopology t = detect_numa_topology();
  const RunPlan plan = make_run_plan(retrieval(2), llama3_8b(), t, {});
  for (const RetrieverPlacement& r : plan.retrievers) {
    EXPECT_GE(r.numa_node, 0);
    EXPECT_LT(r.numa_node, static_cast<int>(t.nodes.size()));
    EXPECT_GE(r.threads, 1);
  }
}

// The GPU worker's NUMA node (worker_binding.h) comes from sysfs: a fake tree stands for a 2-socket
// machine whose GPU hangs off node 1, a one-node machine's "-1", and a device sysfs does not list.
TEST(GpuNumaNode, ReadFromSysfsWhateverTheBusIdSpelling) {
  const test::TempDir dir("ra-sysfs");
  auto device = [&](const std::string& id, const std::string& text) {
    const auto d = dir.path() / "bus/pci/devices" / id;
    std::filesystem::create_directories(d);
    std::ofstream(d / "numa_node") << text;
  };
  device("0000:18:00.0", "1\n");
  device("0000:3b:00.0", "-1\n");
  const std::string root = dir.path().string();
  EXPECT_EQ(pci_device_numa_node("0000:18:00.0", root), 1);
  EXPECT_EQ(pci_device_numa_node("00000000:18:00.0", root), 1);  // NVML's 8-digit domain
  EXPECT_EQ(pci_device_numa_node("0000:3B:00.0", root), -1);     // the kernel does not know
  EXPECT_EQ(pci_device_numa_node("0000:af:00.0", root), -1);     // not there
  EXPECT_EQ(pci_device_numa_node("not a bus id", root), -1);
}

TEST(GpuNumaNode, KernelNodeNumbersMapToTopologyIndexes) {
  NumaTopology t;
  t.nodes.resize(2);
  t.nodes[0].os_index = 0;
  t.nodes[1].os_index = 2;  // node 1 has no CPUs (e.g. CXL memory), so the kernel's 2 is index 1
  EXPECT_EQ(numa_node_index(t, 0), 0);
  EXPECT_EQ(numa_node_index(t, 2), 1);
  EXPECT_EQ(numa_node_index(t, 1), -1);
}

}  // namespace
}  // namespace ra
