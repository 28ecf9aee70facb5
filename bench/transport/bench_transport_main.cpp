// ra-bench-transport: one rank of `ra bench transport` (issue #4 item 7), started by mpirun with the same
// arguments on every rank (SPMD). Rank 0 plays the GPU worker, ranks 1..R the CPU retrievers; every
// rank runs the production HeartbeatThread on its channels, so liveness is checked as in a real job.
// Rank 0 writes one JSON object (one line) to --out, or to stdout without it.
//
//   mpirun -n 1+R ra-bench-transport --transport shm|ucx|mpi [--iterations N] [--warmup W]
//          [--heads 32 --kv-heads 8 --head-dim 128] [--no-evict] [--bulk-mib M [--bulk-messages K]]
//          [--job ID] [--out FILE]
// With --bulk-mib, the worker first sends K messages of M MiB to every retriever (as the prefill ships a
// layer) and reports the aggregate rate.

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <mpi.h>
#include <nlohmann/json.hpp>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>
#include <optional>
#include <set>
#include <sstream>

#include "bench/report/bench_report.h"
#include "bench/transport/round_trip.h"
#include "common/error.h"
#include "transport/bootstrap/links.h"
#include "transport/heartbeat.h"

namespace {

using BenchMpi = ra::transport::MpiSession;
constexpr int kBenchMpiThreadLevel = MPI_THREAD_SERIALIZED;  // the MPI channel needs it
constexpr std::chrono::seconds kStartupTimeout{60};

struct Args {
  std::string transport = "shm";
  ra::bench::Geometry geometry;
  ra::bench::LoopOptions loop;
  std::string job;
  std::string out;
  int liveness_ms = static_cast<int>(ra::transport::kDefaultLivenessTimeout.count());
  double bulk_mib = 0;    // > 0: a bulk transfer first (round_trip.h run_bulk_worker)
  int bulk_messages = 8;
};

// User plus system CPU time of this process so far, in µs.
double process_cpu_us() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  auto us = [](const timeval& t) { return static_cast<double>(t.tv_sec) * 1e6 + static_cast<double>(t.tv_usec); };
  return us(u.ru_utime) + us(u.ru_stime);
}

// "tcp/lo,cma/memory": the distinct transport/device pairs of the lanes in ucp_ep_print_info's text.
std::string ucx_lanes(const std::string& info) {
  std::istringstream in(info);
  std::string line, out;
  std::set<std::string> seen;
  while (std::getline(in, line)) {
    const auto at = line.find("lane[");
    if (at == std::string::npos) continue;
    std::istringstream words(line.substr(at));
    std::string lane, tl;
    words >> lane >> tl;  // "lane[0]:" then "8:tcp/lo.0"
    if (const auto colon = tl.find(':'); colon != std::string::npos) tl = tl.substr(colon + 1);
    if (!tl.empty() && seen.insert(tl).second) out += (out.empty() ? "" : ",") + tl;
  }
  return out;
}

nlohmann::json report(const Args& a, const BenchMpi& mpi, const std::string& link_info,
                      const ra::bench::RoundTrips& trips) {
  const int r_count = mpi.size() - 1;
  const auto s = ra::bench::summarize(trips.us);
  const std::size_t header = sizeof(ra::transport::MessageHeader);
  std::size_t back = 0;
  for (int i = 0; i < r_count; ++i) back += header + ra::bench::reply_payload_bytes(a.geometry, i, r_count);
  nlohmann::json row;
  row["transport"] = a.transport;
  row["retrievers"] = r_count;
  row["p50_us"] = s.p50_us;
  row["p99_us"] = s.p99_us;
  row["mean_us"] = s.mean_us;
  row["min_us"] = s.min_us;
  row["max_us"] = s.max_us;
  row["bytes_out"] = static_cast<std::size_t>(r_count) * (header + ra::bench::request_payload_bytes(a.geometry));
  row["bytes_back"] = back;
  row["iterations"] = a.loop.iterations;
  row["warmup"] = a.loop.warmup;
  row["heads"] = a.geometry.n_heads;
  row["kv_heads"] = a.geometry.n_kv_heads;
  row["head_dim"] = a.geometry.head_dim;
  row["evict"] = a.geometry.evict;
  row["host"] = mpi.host();
  if (!link_info.empty()) row["ucx_lanes"] = ucx_lanes(link_info);
  return row;
}

ra::transport::LinkKind link_kind(const std::string& transport) {
  if (transport == "shm") return ra::transport::LinkKind::kShm;
  if (transport == "ucx") return ra::transport::LinkKind::kUcx;
  RA_REQUIRE(transport == "mpi", "unknown transport '{}': use shm, ucx or mpi", transport);
  return ra::transport::LinkKind::kMpi;
}

// The pipeline's connect path (transport/bootstrap/links.h), with this benchmark's names: segments
// "ra-bench-<job>-r<rank>" (`ra bench transport` removes leftovers of "ra-bench-<job>-" after each run),
// ranks "worker rank 0 on host H" / "retriever rank R on host H".
ra::transport::Links connect(BenchMpi& mpi, const Args& a) {
  const auto deadline = ra::transport::deadline_after(kStartupTimeout);
  const std::vector<std::string> hosts = mpi.allgather(mpi.host(), "host names", deadline);
  const ra::transport::LinkKind kind = link_kind(a.transport);
  if (!ra::transport::link_kind_built(kind)) {
    ra::raise("{}", kind == ra::transport::LinkKind::kShm
                        ? "this build has no shared-memory transport (Boost.Interprocess was not found)"
                        : "this build has no UCX transport (libucx-dev was not found)");
  }
  if (kind == ra::transport::LinkKind::kShm) {
    for (int r = 1; r < mpi.size(); ++r) {
      RA_REQUIRE(hosts[static_cast<size_t>(r)] == hosts[0], "--transport shm needs every rank on one host; rank {} "
                 "runs on {}, the worker on {}", r, hosts[static_cast<size_t>(r)], hosts[0]);
    }
  }
  ra::transport::LinkOptions o;
  o.kind = kind;
  o.segment_name = [&a](int rank) { return fmt::format("ra-bench-{}-r{}", a.job, rank); };
  o.peer_name = [&hosts](int rank) {
    return fmt::format("{} rank {} on host {}", rank == 0 ? "worker" : "retriever", rank,
                       hosts[static_cast<size_t>(rank)]);
  };
  o.liveness_timeout = std::chrono::milliseconds(a.liveness_ms);
  o.deadline = deadline;
  return ra::transport::connect_links(mpi, o);
}

int run(BenchMpi& mpi, int argc, char** argv) {
  Args a;
  CLI::App app{"ra-bench-transport: one rank of `ra bench transport` (start it with mpirun -n 1+R)"};
  app.add_option("--transport", a.transport, "shm, ucx or mpi")->check(CLI::IsMember({"shm", "ucx", "mpi"}));
  app.add_option("--iterations", a.loop.iterations, "Timed round trips")->check(CLI::PositiveNumber);
  app.add_option("--warmup", a.loop.warmup, "Untimed round trips first")->check(CLI::NonNegativeNumber);
  app.add_option("--heads", a.geometry.n_heads, "Query heads");
  app.add_option("--kv-heads", a.geometry.n_kv_heads, "Key/value heads");
  app.add_option("--head-dim", a.geometry.head_dim, "Floats per head");
  app.add_flag("--evict,!--no-evict", a.geometry.evict, "Requests carry one evicted token's k and v");
  app.add_option("--job", a.job, "Unique run id, names the shm segments (default: from rank 0's pid)");
  app.add_option("--out", a.out, "Rank 0 writes its JSON line here (default: stdout)");
  app.add_option("--liveness-ms", a.liveness_ms, "Liveness timeout of the channels")->check(CLI::PositiveNumber);
  app.add_option("--bulk-mib", a.bulk_mib, "First a bulk transfer of messages of this many MiB to every retriever")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--bulk-messages", a.bulk_messages, "Bulk messages per retriever")->check(CLI::PositiveNumber);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  RA_REQUIRE(mpi.size() >= 2, "started with {} rank(s): run it under mpirun -n 1+R (one worker, R >= 1 retrievers)",
             mpi.size());
  ra::bench::check_geometry(a.geometry, mpi.size() - 1);

  const auto startup = ra::transport::deadline_after(std::chrono::seconds(60));
  a.job = mpi.broadcast(a.job.empty() ? std::to_string(getpid()) : a.job, "job id", startup);
  ra::transport::Links links = connect(mpi, a);
  const std::string link_info = ra::transport::first_link_info(links, link_kind(a.transport));

  nlohmann::json row;
  {
    ra::transport::HeartbeatThread heartbeat(links.raw());
    try {
      if (mpi.rank() == 0) {
        double bulk_seconds = 0;
        const auto bulk_bytes = static_cast<std::size_t>(a.bulk_mib * (1 << 20));
        if (bulk_bytes > 0) bulk_seconds = ra::bench::run_bulk_worker(links.raw(), bulk_bytes, a.bulk_messages, a.loop);
        const double cpu0 = process_cpu_us();
        const auto trips = ra::bench::run_worker(links.raw(), a.geometry, a.loop);
        row = report(a, mpi, link_info, trips);
        if (bulk_bytes > 0) {
          const double total = static_cast<double>(bulk_bytes) * a.bulk_messages * (mpi.size() - 1);
          row["bulk_mib"] = a.bulk_mib;
          row["bulk_messages"] = a.bulk_messages;
          row["bulk_seconds"] = bulk_seconds;
          row["bulk_gb_per_s"] = total / bulk_seconds / 1e9;  // all retrievers together
        }
        // CPU the worker process burnt per round trip (spinning included), warm-up and shutdown included.
        row["worker_cpu_us"] = (process_cpu_us() - cpu0) / static_cast<double>(a.loop.warmup + a.loop.iterations);
      } else {
        ra::bench::run_retriever(*links.channels.front(), a.geometry, mpi.rank() - 1, mpi.size() - 1, a.loop);
      }
    } catch (const std::exception& e) {
      for (auto& c : links.channels) ra::bench::send_error(*c, e.what());
      throw;
    }
  }
  links.channels.clear();
  mpi.barrier("finish", ra::transport::deadline_after(std::chrono::seconds(30)));
  if (mpi.rank() == 0) {
    if (a.out.empty()) {
      std::printf("%s\n", row.dump().c_str());
    } else {
      ra::bench::JsonLines f(a.out);
      f.write(row);
      RA_REQUIRE(f.good(), "cannot write {}", a.out);
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // Only main turns errors into an exit code. MPI_Finalize is skipped after an error (a peer may be
  // dead); the non-zero exit makes mpirun end the job.
  std::optional<BenchMpi> mpi;
  try {
    mpi.emplace(&argc, &argv, kBenchMpiThreadLevel);
    return run(*mpi, argc, argv);
  } catch (const std::exception& e) {
    const int rank = mpi ? mpi->rank() : -1;
    char host[256] = {};
    gethostname(host, sizeof(host) - 1);
    std::fprintf(stderr, "ra-bench-transport rank %d on host %s: error: %s\n", rank, host, e.what());
    std::fflush(stderr);
    std::_Exit(1);  // no MPI_Finalize, no destructors: a peer may be dead
  }
}
