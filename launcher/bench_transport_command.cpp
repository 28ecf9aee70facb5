#include "launcher/bench_transport_command.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>

#include "common/error.h"
#include "launcher/child_process.h"
#include "launcher/mpirun_command.h"
#ifdef RA_HAVE_SHM
#include "transport/shm/shm_channel.h"
#endif

namespace ra {
namespace {

namespace fs = std::filesystem;

struct BenchTransportArgs {
  std::vector<std::string> transports = {"shm", "ucx", "mpi"};
  int max_retrievers = 2;
  int64_t iterations = 20000;
  int64_t warmup = 1000;
  int heads = 32;
  int kv_heads = 8;
  int head_dim = 128;
  bool evict = true;
  std::string json_out;
  std::string mpirun = "mpirun";
  std::vector<std::string> mpirun_args;
};

std::string find_bench_executable() {
  const fs::path exe = fs::read_symlink("/proc/self/exe").parent_path() / "ra-bench-transport";
  RA_REQUIRE(access(exe.c_str(), X_OK) == 0, "{} is missing or not executable: it is built beside `ra` when MPI is "
             "found (see scripts/setup.sh)", exe.string());
  return exe.string();
}

std::string format_row(const nlohmann::json& r) {
  return fmt::format("{:<9} {:>10} {:>9.2f} {:>9.2f} {:>9.2f} {:>9.2f} {:>10} {:>10} {:>10}  {}",
                     r["transport"].get<std::string>(), r["retrievers"].get<int>(), r["p50_us"].get<double>(),
                     r["p99_us"].get<double>(), r["mean_us"].get<double>(), r["min_us"].get<double>(),
                     r["bytes_out"].get<int64_t>(), r["bytes_back"].get<int64_t>(), r["iterations"].get<int64_t>(),
                     r["host"].get<std::string>());
}

int run_bench_transport(const BenchTransportArgs& args) {
  RA_REQUIRE(args.max_retrievers >= 1, "--max-retrievers must be at least 1");
  RA_REQUIRE(args.kv_heads > 0 && args.heads > 0 && args.head_dim > 0 && args.heads % args.kv_heads == 0,
             "--heads {} must be a positive multiple of --kv-heads {}, and --head-dim {} positive", args.heads,
             args.kv_heads, args.head_dim);
  RA_REQUIRE(args.max_retrievers <= args.kv_heads, "--max-retrievers {} exceeds --kv-heads {}: each retriever "
             "owns at least one kv head", args.max_retrievers, args.kv_heads);
  const std::string exe = find_bench_executable();
  const char* tmp = std::getenv("TMPDIR");
  const fs::path dir = fs::path(tmp && *tmp ? tmp : "/tmp") / fmt::format("ra-bench-transport-{}", getpid());
  fs::create_directories(dir);
  std::unique_ptr<std::ofstream> json;
  if (!args.json_out.empty()) {
    json = std::make_unique<std::ofstream>(args.json_out);
    RA_REQUIRE(json->good(), "cannot write --json {}", args.json_out);
  }

  std::printf("%-9s %10s %9s %9s %9s %9s %10s %10s %10s  %s\n", "transport", "retrievers", "p50_us", "p99_us",
              "mean_us", "min_us", "bytes_out", "bytes_back", "iterations", "host");
  std::vector<std::string> failures;
  for (const std::string& transport : args.transports) {
    for (int r = 1; r <= args.max_retrievers; ++r) {
      const std::string job = fmt::format("{}-{}{}", getpid(), transport, r);
      const fs::path row_path = dir / fmt::format("{}-{}.json", transport, r);
      std::vector<std::string> argv{args.mpirun};
      if (running_as_root()) argv.emplace_back("--allow-run-as-root");
      argv.emplace_back("--oversubscribe");
      // Unbound by default, as the pipeline runs (mpirun_command.h); --mpirun-arg=--bind-to overrides.
      const bool user_binds = std::any_of(args.mpirun_args.begin(), args.mpirun_args.end(), [](const std::string& a) {
        return a == "--bind-to" || a == "-bind-to" || a.starts_with("--bind-to=");
      });
      if (!user_binds) argv.insert(argv.end(), {"--bind-to", "none"});
      argv.insert(argv.end(), args.mpirun_args.begin(), args.mpirun_args.end());
      argv.insert(argv.end(), {"-n", std::to_string(1 + r), exe, "--transport", transport, "--iterations",
                               std::to_string(args.iterations), "--warmup", std::to_string(args.warmup), "--heads",
                               std::to_string(args.heads), "--kv-heads", std::to_string(args.kv_heads), "--head-dim",
                               std::to_string(args.head_dim), args.evict ? "--evict" : "--no-evict", "--job", job,
                               "--out", row_path.string()});
      const int rc = run_forwarding_signals(argv);
#ifdef RA_HAVE_SHM
      for (const std::string& name : transport::list_shm_segments(fmt::format("ra-bench-{}-", job))) {
        std::fprintf(stderr, "ra: removing leftover shared-memory segment /dev/shm/%s\n", name.c_str());
        transport::remove_shm_segment(name);
      }
#endif
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
      std::printf("%s\n", format_row(row).c_str());
      std::fflush(stdout);
      if (json) *json << row.dump() << "\n" << std::flush;
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
  cmd->add_option("--iterations", args->iterations, "Timed round trips per run")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--warmup", args->warmup, "Untimed round trips before them")->capture_default_str()->check(
      CLI::NonNegativeNumber);
  cmd->add_option("--heads", args->heads, "Query heads (q rows sent per layer)")->capture_default_str();
  cmd->add_option("--kv-heads", args->kv_heads, "Key/value heads (sharded over the retrievers)")->capture_default_str();
  cmd->add_option("--head-dim", args->head_dim, "Floats per head vector")->capture_default_str();
  cmd->add_flag("--evict,!--no-evict", args->evict, "Requests carry one evicted token's k and v (default: yes)");
  cmd->add_option("--json", args->json_out, "Write one JSON object per run to this file");
  cmd->add_option("--mpirun", args->mpirun, "The mpirun to use")->capture_default_str();
  cmd->add_option("--mpirun-arg", args->mpirun_args, "Extra mpirun argument (repeatable), e.g. --mpirun-arg=--mca");
  cmd->callback([args] {
    const int rc = run_bench_transport(*args);
    if (rc != 0) throw CLI::RuntimeError(rc);
  });
}

}  // namespace ra
