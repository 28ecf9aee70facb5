// The retriever's report at the handshake (issue 21 item 2): its kHelloAck encoding (round trip,
// truncated, trailing bytes, an ack of the protocol before it, another report layout, a malformed
// text), and the worker's lines beside the plan's guess, from a plan made on a machine the retrievers'
// host is not.

#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "launcher/plan/run_plan.h"
#include "launcher/ranks/retriever_reports.h"
#include "tests/support/error_message.h"
#include "transport/hello.h"
#include "transport/wire.h"

namespace ra {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;
using test::error_of;
using transport::HelloPayload;
using transport::PeerError;
using transport::RetrieverReport;

constexpr const char* kWhat = "kHelloAck from retriever rank 2 on host cpu1";

HelloPayload hello() { return transport::make_hello({4, 8, 2, 16, 0.25f}, 0x1234); }

RetrieverReport report() {
  RetrieverReport r;
  r.rank = 2;
  r.host = "cpu1";
  r.pid = 4242;
  r.transport = "ucx";
  r.cores_per_node = {8, 8};
  r.numa_node = 1;
  r.binding = "NUMA binding: node 1: cpus 16-31, memory bound (process)";
  r.cpus = {16, 18, 20, 22};
  r.threads = 4;
  r.pinned = true;
  return r;
}

std::vector<std::byte> ack(const RetrieverReport& r = report()) {
  std::vector<std::byte> out;
  transport::write_hello_ack(hello(), r, out);
  return out;
}

RetrieverReport read(const std::vector<std::byte>& bytes) { return transport::read_hello_ack(bytes, kWhat, hello()); }

// The fixed part of an ack, for tests that rewrite it.
transport::RetrieverReportPayload fixed_part(const std::vector<std::byte>& bytes) {
  transport::RetrieverReportPayload p;
  std::memcpy(&p, bytes.data() + sizeof(HelloPayload), sizeof(p));
  return p;
}
void set_fixed_part(std::vector<std::byte>& bytes, const transport::RetrieverReportPayload& p) {
  std::memcpy(bytes.data() + sizeof(HelloPayload), &p, sizeof(p));
}

TEST(RetrieverReportWire, RoundTrip) {
  EXPECT_EQ(read(ack()), report());
  RetrieverReport unbound;  // an in-process service's: nothing known but its threads
  unbound.threads = 1;
  EXPECT_EQ(read(ack(unbound)), unbound);
  RetrieverReport odd = report();
  odd.host = "h\xff\"\\";  // not UTF-8, and JSON's escapes: replaced, never a throw
  const RetrieverReport back = read(ack(odd));
  EXPECT_THAT(back.host, AllOf(HasSubstr("h"), HasSubstr("\"\\")));
  EXPECT_EQ(read(ack(report())).node_cores(), 8);
}

TEST(RetrieverReportWire, TruncatedOrLongerIsRefusedByName) {
  const std::vector<std::byte> whole = ack();
  for (size_t n = 0; n < whole.size(); ++n) {
    const std::vector<std::byte> cut(whole.begin(), whole.begin() + static_cast<std::ptrdiff_t>(n));
    EXPECT_THAT(error_of<PeerError>([&] { read(cut); }), AllOf(HasSubstr(kWhat), HasSubstr("truncated")))
        << n << " of " << whole.size() << " bytes";
  }
  std::vector<std::byte> longer = whole;
  longer.push_back(std::byte{0});
  EXPECT_THAT(error_of<PeerError>([&] { read(longer); }), HasSubstr("1 unexpected trailing bytes"));
}

// Before protocol version 7 a kHelloAck was the HelloPayload alone: its version names the difference.
TEST(RetrieverReportWire, AnAckOfTheOldFormatIsAClearError) {
  HelloPayload old = hello();
  old.protocol_version = 6;
  std::vector<std::byte> bytes(sizeof(old));
  std::memcpy(bytes.data(), &old, sizeof(old));
  EXPECT_THAT(error_of<PeerError>([&] { read(bytes); }),
              AllOf(HasSubstr(kWhat), HasSubstr("protocol_version 6, but this worker speaks"),
                    HasSubstr(fmt::format("protocol_version {}", transport::kProtocolVersion)),
                    HasSubstr("another build")));
  // The same version with no report (a build that bumped nothing): truncated, by name.
  old.protocol_version = transport::kProtocolVersion;
  std::memcpy(bytes.data(), &old, sizeof(old));
  EXPECT_THAT(error_of<PeerError>([&] { read(bytes); }), AllOf(HasSubstr(kWhat), HasSubstr("truncated")));
}

TEST(RetrieverReportWire, ADifferentHelloOrReportLayoutIsNamed) {
  std::vector<std::byte> other_layout = ack();
  transport::RetrieverReportPayload p = fixed_part(other_layout);
  p.report_bytes += 8;
  set_fixed_part(other_layout, p);
  EXPECT_THAT(error_of<PeerError>([&] { read(other_layout); }),
              HasSubstr("report_bytes 48, but this worker's RetrieverReportPayload is 40 bytes"));

  std::vector<std::byte> other_plan = ack();
  HelloPayload h = hello();
  h.plan_digest = 0x99;
  std::memcpy(other_plan.data(), &h, sizeof(h));
  EXPECT_THAT(error_of<PeerError>([&] { read(other_plan); }), HasSubstr("plan_digest: worker 0x0000000000001234"));

  std::vector<std::byte> other_header = ack();
  h = hello();
  h.header_bytes += 4;
  std::memcpy(other_header.data(), &h, sizeof(h));
  EXPECT_THAT(error_of<PeerError>([&] { read(other_header); }), HasSubstr("header_bytes: worker"));
}

TEST(RetrieverReportWire, AMalformedReportIsRefused) {
  auto with_text = [](const std::string& text, auto&& edit) {
    std::vector<std::byte> bytes;
    transport::WireWriter w(bytes);
    w.put(hello());
    transport::RetrieverReportPayload p;
    p.threads = 1;
    p.text_bytes = text.size();
    edit(p);
    w.put(p);
    w.put_text(text);
    return bytes;
  };
  const std::string good = R"({"host":"a","transport":"","cores_per_node":[4],"binding":"","cpus":[]})";
  auto none = [](transport::RetrieverReportPayload& p) { p.numa_nodes = 1; };
  EXPECT_EQ(read(with_text(good, none)).cores_per_node, std::vector<int>{4});
  EXPECT_THAT(error_of<PeerError>([&] { read(with_text("{\"host\":", none)); }), HasSubstr("is not JSON"));
  EXPECT_THAT(error_of<PeerError>([&] { read(with_text("[1]", none)); }), HasSubstr("not a JSON object"));
  EXPECT_THAT(error_of<PeerError>([&] { read(with_text(R"({"host":"a"})", none)); }), HasSubstr("has no 'transport'"));
  EXPECT_THAT(error_of<PeerError>([&] {
                read(with_text(R"({"host":1,"transport":"","cores_per_node":[4],"binding":"","cpus":[]})", none));
              }),
              HasSubstr("'host' has the wrong type"));
  // Fields out of range, or the node count and the text's list disagreeing.
  for (auto edit : std::vector<void (*)(transport::RetrieverReportPayload&)>{
           [](transport::RetrieverReportPayload& p) { p.numa_nodes = 2; },
           [](transport::RetrieverReportPayload& p) { p.numa_nodes = 1, p.numa_node = 1; },
           [](transport::RetrieverReportPayload& p) { p.numa_nodes = 1, p.numa_node = -2; },
           [](transport::RetrieverReportPayload& p) { p.numa_nodes = 1, p.threads = 0; },
           [](transport::RetrieverReportPayload& p) { p.numa_nodes = 1, p.pinned = 2; }}) {
    EXPECT_THAT(error_of<PeerError>([&] { read(with_text(good, edit)); }), HasSubstr("out of range or inconsistent"));
  }
  // A text length past the message: truncated, before any allocation of that size.
  auto huge = [](transport::RetrieverReportPayload& p) { p.numa_nodes = 1, p.text_bytes = uint64_t{1} << 60; };
  EXPECT_THAT(error_of<PeerError>([&] { read(with_text(good, huge)); }), HasSubstr("truncated message"));
}

NumaTopology topology(int nodes, int cores_per_node) {
  NumaTopology t;
  for (int n = 0; n < nodes; ++n) {
    NumaTopology::Node node;
    node.os_index = n;
    for (int c = 0; c < cores_per_node; ++c) node.cpus.push_back(n * cores_per_node + c);
    node.core_cpus = node.cpus;
    node.cores = cores_per_node;
    t.nodes.push_back(node);
    t.total_cores += cores_per_node;
  }
  return t;
}

RunPlan plan_from(const NumaTopology& launcher, const std::vector<HostSlots>& hosts, int retrievers,
                  int retriever_threads = 0) {
  RunConfig c;
  c.mode = AttentionMode::kRetrieval;
  c.retrievers = retrievers;
  c.transport = TransportKind::kUcx;
  c.retriever_threads = retriever_threads;
  return make_run_plan(c, {32, 32, 8, 128, 0.088f, "BF16"}, launcher, hosts);
}

// The plan is made on a one-node GPU machine of 16 cores; the retrievers run on a host of 2 nodes of 4
// cores each, place themselves there (placed_on_this_host) and say so: the worker's lines give the
// report and what of the plan's guess it overrides.
TEST(RetrieverReportLines, TheReportOverridesThePlansGuessForAnotherHost) {
  const NumaTopology launcher = topology(1, 16), cpu_host = topology(2, 4);
  const RunPlan plan = plan_from(launcher, {{"gpu0", 1}, {"cpu1", 2}}, 2);
  std::vector<RetrieverReport> reports;
  for (int rank = 1; rank <= 2; ++rank) {
    const RetrieverPlacement here = placed_on_this_host(plan, rank, cpu_host);
    EXPECT_EQ(here.threads, 4);  // item 3: sized by the cores of its own node, not the launcher's 16 / 2
    reports.push_back(make_retriever_report(plan, rank, "cpu1.cluster", cpu_host, here, "NUMA binding: ...", true));
    EXPECT_EQ(reports.back().numa_nodes(), 2);
    EXPECT_EQ(reports.back().threads, 4);
    EXPECT_EQ(reports.back().transport, "ucx");
  }
  const std::vector<std::string> lines = describe_retriever_reports(plan, reports, "gpu0");
  ASSERT_EQ(lines.size(), 2u);
  // Retriever 1: node 0 as the plan said, but 4 cores where the plan gave it 8 of the launcher's 16.
  EXPECT_THAT(lines[0], HasSubstr("retriever rank 1 on host cpu1.cluster (pid "));
  EXPECT_THAT(lines[0], HasSubstr("): NUMA node 0 of 2 (4 cores each), cores 0-3, 4 threads pinned, over ucx; "
                                  "the report overrides the plan's guess (cores 0-7, 8 threads)"));
  EXPECT_THAT(lines[0], Not(HasSubstr("host cpu1)")));  // "cpu1" and "cpu1.cluster" are one host
  EXPECT_THAT(lines[1], HasSubstr("NUMA node 1 of 2 (4 cores each), cores 4-7, 4 threads pinned, over ucx; "
                                  "the report overrides the plan's guess (NUMA node 0, cores 8-15, 8 threads)"));
  // A retriever on another host than the plan's.
  reports[1].host = "cpu7";
  EXPECT_THAT(describe_retriever_reports(plan, reports, "gpu0")[1], HasSubstr("(host cpu1, NUMA node 0"));
}

TEST(RetrieverReportLines, NothingOverriddenOnTheLaunchersOwnMachine) {
  const NumaTopology here = topology(2, 4);
  const RunPlan plan = plan_from(here, {}, 2);  // no hostfile: "localhost", the worker's host
  std::vector<RetrieverReport> reports;
  for (int rank = 1; rank <= 2; ++rank) {
    reports.push_back(make_retriever_report(plan, rank, "gpu0", here, placed_on_this_host(plan, rank, here), "", false));
  }
  const std::vector<std::string> lines = describe_retriever_reports(plan, reports, "gpu0");
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_THAT(lines[1], HasSubstr("retriever rank 2 on host gpu0 (pid"));
  EXPECT_THAT(lines[1], HasSubstr("NUMA node 1 of 2 (4 cores each), cores 4-7, 4 threads unpinned, over ucx"));
  for (const std::string& line : lines) EXPECT_THAT(line, Not(HasSubstr("overrides")));
  // Seen from another worker host, "localhost" is not the retriever's.
  EXPECT_THAT(describe_retriever_reports(plan, reports, "gpu9")[0], HasSubstr("overrides the plan's guess (host localhost)"));
}

TEST(RetrieverReportLines, MoreThreadsThanTheNodesCoresIsAWarning) {
  const NumaTopology launcher = topology(1, 16), cpu_host = topology(2, 4);
  const RunPlan plan = plan_from(launcher, {{"gpu0", 1}, {"cpu1", 1}}, 1, 12);  // retriever_threads 12
  const RetrieverPlacement here = placed_on_this_host(plan, 1, cpu_host);
  const std::vector<std::string> lines = describe_retriever_reports(
      plan, {make_retriever_report(plan, 1, "cpu1", cpu_host, here, "", true)}, "gpu0");
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_THAT(lines[0], HasSubstr("NUMA node 0 of 2 (4 cores each), cores 0-3, 12 threads pinned"));
  EXPECT_EQ(lines[1],
            "warning: retriever rank 1 on host cpu1 runs 12 search threads on the 4 cores of its NUMA node 0: threads "
            "share cores (retriever_threads 12; 0 sizes each retriever by its own host)");
  RetrieverReport unbound;
  unbound.host = "cpu2";
  unbound.cores_per_node = {4, 2};
  unbound.threads = 7;
  const std::vector<std::string> two = describe_retriever_reports(plan, {unbound}, "gpu0");
  ASSERT_EQ(two.size(), 2u);
  EXPECT_THAT(two[0], HasSubstr("unbound, 2 NUMA nodes (4, 2 cores), no cores of its own, 7 threads unpinned"));
  EXPECT_THAT(two[1], HasSubstr("runs 7 search threads on the 6 cores of its host"));
}

}  // namespace
}  // namespace ra
