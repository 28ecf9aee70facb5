#include "bench/decode/offloaded_run.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include <fmt/format.h>

#include "common/error.h"
#include "launcher/control/child_process.h"

namespace ra {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

std::string self_exe() {
  std::string path(4096, '\0');
  const ssize_t n = readlink("/proc/self/exe", path.data(), path.size() - 1);
  RA_REQUIRE(n > 0, "bench decode: cannot find its own executable (/proc/self/exe: {})", std::strerror(errno));
  path.resize(static_cast<size_t>(n));
  return path;
}

// The job's config: the mode, the geometry, the prompt length and the index at the stated budget.
std::string job_config(const OffloadedRunSpec& s, const std::string& report) {
  std::ostringstream y;
  y << "mode: " << s.mode << "\n";
  if (!s.model.empty()) y << "model: " << s.model << "\n";
  y << "synthetic_prompt_bytes: " << s.context - 1 << "\n"  // + BOS
    << "max_new_tokens: " << s.decode_steps + 1 << "\n"      // the first token comes from the prefill
    << "ignore_eos: true\n"
    << "seed: " << s.seed << "\n"
    << "sinks: " << s.sinks << "\nwindow: " << s.window << "\n"
    << "retrievers: " << s.retrievers << "\n"
    << "retriever_threads: " << s.retriever_threads << "\n"
    << "transport: " << s.transport << "\n"
    << "backend: " << s.backend << "\n"
    << "report_json: " << report << "\n"
    << "index:\n  top_k: 100\n";
  if (s.scan_fraction > 0) y << "  scan_fraction: " << s.scan_fraction << "\n";
  for (const std::string& line : s.index_settings) y << "  " << line << "\n";
  if (s.geometry != nullptr) {
    const ModelConfig& g = *s.geometry;
    y << "geometry:\n"
      << "  hidden_size: " << g.hidden_size << "\n  n_layers: " << g.n_layers << "\n  n_heads: " << g.n_heads
      << "\n  n_kv_heads: " << g.n_kv_heads << "\n  head_dim: " << g.head_dim
      << "\n  intermediate_size: " << g.intermediate_size << "\n  max_position_embeddings: "
      << std::max<int64_t>(g.max_position_embeddings, s.context + s.decode_steps + 8) << "\n";
  }
  return y.str();
}

// The parent of `pid` from /proc/PID/stat ("pid (comm) state ppid ..."; comm may hold spaces and
// parentheses, so the fields are read after the last ')'); 0 when the process is gone.
int64_t parent_of(int64_t pid) {
  std::ifstream in(fmt::format("/proc/{}/stat", pid));
  std::string stat;
  if (!std::getline(in, stat)) return 0;
  const size_t close = stat.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream fields(stat.substr(close + 1));
  std::string state;
  int64_t ppid = 0;
  fields >> state >> ppid;
  return ppid;
}

// Whether `pid` descends from this process: the job's ranks do (this process, then ra generate, mpirun);
// another program's ranks, or a finished job's still exiting (re-parented), do not.
bool descends_from_this_process(int64_t pid) {
  const int64_t self = getpid();
  for (int depth = 0; depth < 16 && pid > 1; ++depth) {
    pid = parent_of(pid);
    if (pid == self) return true;
  }
  return false;
}

// Peak RSS and thread counts of the job's ranks, read from /proc every half second while it runs (by
// process name, among this process's descendants: ranks of tests or jobs beside it are not counted).
class RankSampler {
 public:
  RankSampler() : thread_([this] { run(); }) {}
  ~RankSampler() { stop(); }
  void stop() {
    done_ = true;
    if (thread_.joinable()) thread_.join();
  }
  json figures() const {
    json out;
    double worker = 0, retriever_max = 0, retriever_sum = 0;
    int64_t threads_min = -1, threads_max = 0, retrievers = 0;
    for (const auto& [pid, p] : peaks_) {
      if (p.worker) {
        worker = std::max(worker, p.rss_gib);
      } else {
        ++retrievers;
        retriever_max = std::max(retriever_max, p.rss_gib);
        retriever_sum += p.rss_gib;
        threads_min = threads_min < 0 ? p.threads_min : std::min(threads_min, p.threads_min);
        threads_max = std::max(threads_max, p.threads_max);
      }
    }
    out["worker_peak_rss_gib"] = worker;
    out["retriever_processes"] = retrievers;
    out["retriever_peak_rss_gib"] = retriever_max;     // the largest one
    out["retrievers_peak_rss_gib_sum"] = retriever_sum;  // each at its own peak
    out["retriever_threads"] = {std::max<int64_t>(0, threads_min), threads_max};
    return out;
  }

 private:
  struct Peak {
    bool worker = false;
    double rss_gib = 0;
    int64_t threads_min = 0, threads_max = 0;
  };
  void run() {
    while (!done_) {
      sample();
      for (int i = 0; i < 10 && !done_; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  void sample() {
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator("/proc", ec)) {
      const std::string pid = entry.path().filename();
      if (pid.empty() || pid.find_first_not_of("0123456789") != std::string::npos) continue;
      std::ifstream comm(entry.path() / "comm");
      std::string name;
      if (!std::getline(comm, name)) continue;
      const bool worker = name == "ra-gpu-worker";
      if (!worker && name.rfind("ra-cpu-retriev", 0) != 0) continue;  // comm is cut at 15 characters
      if (!descends_from_this_process(std::stoll(pid))) continue;
      std::ifstream status(entry.path() / "status");
      double rss_kib = 0;
      int64_t threads = 0;
      for (std::string line; std::getline(status, line);) {
        if (line.rfind("VmRSS:", 0) == 0) rss_kib = std::stod(line.substr(6));
        if (line.rfind("Threads:", 0) == 0) threads = std::stoll(line.substr(8));
      }
      if (threads == 0) continue;  // gone while read
      Peak& p = peaks_[std::stoll(pid)];
      const bool first = p.threads_max == 0;
      p.worker = worker;
      p.rss_gib = std::max(p.rss_gib, rss_kib / (1024.0 * 1024.0));
      p.threads_min = first ? threads : std::min(p.threads_min, threads);
      p.threads_max = std::max(p.threads_max, threads);
    }
  }

  std::atomic<bool> done_{false};
  std::map<int64_t, Peak> peaks_;  // written by thread_ only; read after stop()
  std::thread thread_;
};

std::string log_tail(const std::string& path, size_t lines) {
  std::ifstream in(path);
  std::vector<std::string> all;
  for (std::string line; std::getline(in, line);) all.push_back(line);
  std::string out;
  for (size_t i = all.size() > lines ? all.size() - lines : 0; i < all.size(); ++i) out += all[i] + "\n";
  return out;
}

}  // namespace

json run_offloaded_row(const OffloadedRunSpec& s) {
  fs::create_directories(s.work_dir);
  const std::string tag = fmt::format("{}_{}", s.context, s.mode);
  const std::string config = s.work_dir + "/" + tag + ".yaml", report = s.work_dir + "/" + tag + ".report.json",
                    log = s.work_dir + "/" + tag + ".log";
  fs::remove(report);
  {
    std::ofstream out(config);
    out << job_config(s, report);
    RA_REQUIRE(out.good(), "bench decode: cannot write {}", config);
  }
  json row{{"context", s.context}, {"mode", s.mode}, {"pipeline", "ra generate"}, {"config", config}, {"log", log}};
  if (s.scan_fraction > 0) row["scan_budget"] = s.scan_fraction;
  // `sh -c` only to send the job's output to its log; it execs ra at once (signals reach ra itself).
  const std::vector<std::string> argv{"/bin/sh", "-c", "log=$1; shift; exec \"$@\" > \"$log\" 2>&1",
                                      "sh",       log,  self_exe(), "generate", "--config", config};
  const auto start = std::chrono::steady_clock::now();
  const ExitBound bound{[&] { return std::chrono::steady_clock::now() - start > std::chrono::seconds(s.timeout_s); },
                        std::chrono::seconds(0), fmt::format("{} s passed (--run-timeout)", s.timeout_s)};
  RankSampler sampler;
  bool timed_out = false;
  const int rc = run_forwarding_signals(argv, &bound, &timed_out);
  sampler.stop();
  row["wall_s"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const json ranks = sampler.figures();
  for (const auto& [key, value] : ranks.items()) row[key] = value;
  if (rc != 0 || !fs::exists(report)) {
    row["skipped"] = fmt::format("ra generate {} (log {}):\n{}",
                                 timed_out ? fmt::format("ran past {} s", s.timeout_s) : fmt::format("exited {}", rc),
                                 log, log_tail(log, 6));
    return row;
  }
  std::ifstream in(report);
  const json r = json::parse(in);
  row["backend"] = r["backend"];
  row["prompt_tokens"] = r["prompt_tokens"];
  row["steps"] = r["decode_steps"];
  row["ms_p50"] = r["decode_ms"]["p50"];
  row["ms_p99"] = r["decode_ms"]["p99"];
  row["ms_mean"] = r["decode_ms"]["mean"];
  row["timed_on"] = "host";  // each decode step's wall time on the worker, as a user sees it
  row["prefill_s"] = r["prefill_s"];  // includes the build tail
  row["build_tail_s"] = r["build_tail_s"];
  // full and window run in `ra` itself (no worker rank): their RSS is the report's.
  if (row["worker_peak_rss_gib"].get<double>() == 0) row["worker_peak_rss_gib"] = r["worker_peak_rss_gib"];
  if (r.contains("gpu_peak_gib")) {
    row["peak_gpu_gib"] = r["gpu_peak_gib"];
    row["gpu_weights_gib"] = r["gpu_weights_gib"];
  }
  if (r.contains("retrieval")) row["breakdown"] = r["retrieval"];
  return row;
}

}  // namespace ra
