#include "bench/transport/bench_transport_command.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "bench/report/bench_report.h"
#include "bench/transport/round_trip.h"
#include "common/cli_exit.h"
#include "common/error.h"
#include "launcher/control/child_process.h"
#include "launcher/control/shm_cleanup.h"
#include "launcher/plan/mpirun_command.h"

namespace ra {
namespace {

namespace fs = std::filesystem;

// The flags. Geometry and loop knobs are the rank program's own structs (round_trip.h), passed on to it.
struct BenchTransportArgs {
  std::vector<std::string> transports = {"shm", "ucx", "mpi"};
  int max_retrievers = 2;
  bench::Geometry geometry;
  bench::LoopOptions loop;
  std::string json_out;
  std::string mpirun = "mpirun";
  std::vector<std::string> mpirun_args;
  double bulk_mib = 0;
  int bulk_messages = 8;
};

// The stdout table, one row per (transport, R).
const std::vector<bench::Column> kColumns = {
    {"transport", "transport", 9, true},     {"retrievers", "retrievers", 10},
    {"p50_us", "p50_us", 9, false, ".2f"},   {"p99_us", "p99_us", 9, false, ".2f"},
    {"mean_us", "mean_us", 9, false, ".2f"}, {"min_us", "min_us", 9, false, ".2f"},
    {"bytes_out", "bytes_out", 10},          {"bytes_back", "bytes_back", 10},
    {"iterations", "iterations", 10},        {"bulk_gb_per_s", "bulk_GB/s", 9, false, ".2f"},
    {"host", "host", 0, false, "", "  "},
};

std::string find_bench_executable() {
  const fs::path exe = fs::read_symlink("/proc/self/exe").parent_path() / "ra-bench-transport";
  RA_REQUIRE(access(exe.c_str(), X_OK) == 0, "{} is missing or not executable: it is built beside `ra` when MPI is "
             "found (see scripts/setup.sh)", exe.string());
  return exe.string();
}

int run_bench_transport(const BenchTransportArgs& args) {
  const bench::Geometry& g = args.geometry;
  RA_REQUIRE(args.max_retrievers >= 1, "--max-retrievers must be at least 1");
  RA_REQUIRE(g.n_kv_heads > 0 && g.n_heads > 0 && g.head_dim > 0 && g.n_heads % g.n_kv_heads == 0,
             "--heads {} must be a positive multiple of --kv-heads {}, and --head-dim {} positive", g.n_heads,
             g.n_kv_heads, g.head_dim);
  RA_REQUIRE(args.max_retrievers <= g.n_kv_heads, "--max-retrievers {} exceeds --kv-heads {}: each retriever "
             "owns at least one kv head", args.max_retrievers, g.n_kv_heads);
  const std::string exe = find_bench_executable();
  const char* tmp = std::getenv("TMPDIR");
  const fs::path dir = fs::path(tmp && *tmp ? tmp : "/tmp") / fmt::format("ra-bench-transport-{}", getpid());
  fs::create_directories(dir);
  bench::JsonLines json(args.json_out);
  RA_REQUIRE(json.good(), "cannot write --json {}", args.json_out);

  std::printf("%s\n", bench::table_header(kColumns).c_str());
  std::vector<std::string> failures;
  for (const std::string& transport : args.transports) {
    for (int r = 1; r <= args.max_retrievers; ++r) {
      const std::string job = fmt::format("{}-{}{}", getpid(), transport, r);
      const fs::path row_path = dir / fmt::format("{}-{}.json", transport, r);
      // Unbound by default, as the pipeline runs (mpirun_command.h); --mpirun-arg=--bind-to overrides.
      std::vector<std::string> argv = mpirun_prefix(args.mpirun, running_as_root(), "", args.mpirun_args);
      argv.insert(argv.end(), {"-n", std::to_string(1 + r), exe, "--transport", transport, "--iterations",
                               std::to_string(args.loop.iterations), "--warmup", std::to_string(args.loop.warmup),
                               "--heads", std::to_string(g.n_heads), "--kv-heads", std::to_string(g.n_kv_heads),
                               "--head-dim", std::to_string(g.head_dim), g.evict ? "--evict" : "--no-evict", "--job",
                               job, "--out", row_path.string(), "--bulk-mib", fmt::format("{}", args.bulk_mib),
                               "--bulk-messages", std::to_string(args.bulk_messages)});
      const int rc = run_forwarding_signals(argv);
      remove_leftover_shm_segments(fmt::format("ra-bench-{}-", job));
      nlohmann::json row;
      std::ifstream in(row_path);
      if (rc == 0 && in) {
        try {
          row = nlohmann::json::parse(in);
        } catch (const nlohmann::json::exception&) {
          row = nullptr;
        }
      }
      if (!row.is_object()) {
        failures.push_back(fmt::format("{} with {} retriever(s): {}", transport, r,
                                       rc != 0 ? fmt::format("mpirun exited with {}", rc) : "no result row"));
        std::fprintf(stderr, "ra: %s\n", failures.back().c_str());
        continue;
      }
      std::printf("%s\n", bench::table_row(kColumns, row).c_str());
      std::fflush(stdout);
      json.write(row);
    }
  }
  std::error_code ignored;
  fs::remove_all(dir, ignored);
  if (!failures.empty()) {
    std::fprintf(stderr, "ra: error: %zu run(s) failed: %s\n", failures.size(), fmt::format("{}", fmt::join(failures, "; ")).c_str());
    return 1;
  }
  return 0;
}

}  // namespace

void add_bench_transport_command(CLI::App& bench) {
  auto args = std::make_shared<BenchTransportArgs>();
  CLI::App* cmd = bench.add_subcommand("transport", "Per-layer worker/retriever round trip over shm, UCX and MPI "
                                                    "(no-op search), under mpirun");
  cmd->add_option("--transports", args->transports, "Transports to measure")
      ->delimiter(',')
      ->capture_default_str()
      ->check(CLI::IsMember({"shm", "ucx", "mpi"}));
  cmd->add_option("--max-retrievers", args->max_retrievers, "Runs with R = 1..this many retrievers")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--iterations", args->loop.iterations, "Timed round trips per run")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--warmup", args->loop.warmup, "Untimed round trips before them")->capture_default_str()->check(
      CLI::NonNegativeNumber);
  cmd->add_option("--heads", args->geometry.n_heads, "Query heads (q rows sent per layer)")->capture_default_str();
  cmd->add_option("--kv-heads", args->geometry.n_kv_heads, "Key/value heads (sharded over the retrievers)")->capture_default_str();
  cmd->add_option("--head-dim", args->geometry.head_dim, "Floats per head vector")->capture_default_str();
  cmd->add_flag("--evict,!--no-evict", args->geometry.evict, "Requests carry one evicted token's k and v (default: yes)");
  cmd->add_option("--json", args->json_out, "Write one JSON object per run to this file");
  cmd->add_option("--mpirun", args->mpirun, "The mpirun to use")->capture_default_str();
  cmd->add_option("--mpirun-arg", args->mpirun_args, "Extra mpirun argument (repeatable), e.g. --mpirun-arg=--mca");
  cmd->add_option("--bulk-mib", args->bulk_mib,
                  "Also measure bulk transfer: messages of this many MiB to every retriever at once, as the prefill "
                  "ships a layer (0: off)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--bulk-messages", args->bulk_messages, "Bulk messages per retriever")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  on_run_exit_with(*cmd, [args] { return run_bench_transport(*args); });
}

}  // namespace ra
