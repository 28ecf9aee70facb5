#include "launcher/ranks/process_common.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

#include "common/error.h"
#include "transport/channel.h"
#ifdef RA_HAVE_SHM
#include "transport/shm/shm_channel.h"
#endif

namespace ra {
namespace {

char g_segment[256];

extern "C" void on_exit_signal(int sig) {
  if (g_segment[0] != '\0') shm_unlink(g_segment);
  _exit(128 + sig);
}

}  // namespace

RunPlan read_plan_file(const std::string& path) {
  std::ifstream in(path);
  RA_REQUIRE(in.good(), "cannot read the plan file {}: {}", path, std::strerror(errno));
  std::stringstream text;
  text << in.rdbuf();
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text.str());
  } catch (const nlohmann::json::exception& e) {
    raise("the plan file {} is not valid JSON: {}", path, e.what());
  }
  return plan_from_json(j, path);
}

std::string plan_path_from_args(int argc, char** argv, const char* program) {
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], "--plan") == 0) return argv[i + 1];
  }
  raise("usage: {} --plan PLAN.json (started by `ra generate`, which writes the plan and runs mpirun)", program);
}

std::string describe_rank_waits(const RunPlan& plan, bool retriever_side) {
  const char* policy = std::getenv("OMP_WAIT_POLICY");
  std::string out = std::string("waits: OpenMP ") + (policy != nullptr && *policy != '\0' ? policy : "default");
#ifdef RA_HAVE_SHM
  if (plan.config.transport == TransportKind::kShm) {
    out += ", shm spin " + std::to_string(transport::shm_spin_budget(retriever_side).count()) + " us";
  }
#else
  (void)plan;
  (void)retriever_side;
#endif
  return out;
}

void install_exit_signal_handlers(const std::string& shm_segment) {
  std::snprintf(g_segment, sizeof(g_segment), "/%s", shm_segment.c_str());
  if (shm_segment.empty()) g_segment[0] = '\0';
  struct sigaction sa {};
  sa.sa_handler = on_exit_signal;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) sigaction(sig, &sa, nullptr);
}

void remove_registered_segment() noexcept {
  if (g_segment[0] != '\0') shm_unlink(g_segment);
}

void die_with_parent(const char* program) {
  // SIGTERM reaches on_exit_signal once installed (it unlinks this rank's segment); until then it ends
  // the process as well. getppid() == 1: the parent (mpirun) was gone before the prctl took effect.
  if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0) {
    std::fprintf(stderr, "%s: cannot ask to die with the parent process: %s\n", program, std::strerror(errno));
  }
  if (getppid() == 1) {
    std::fprintf(stderr, "%s: the parent process (mpirun) has exited; exiting\n", program);
    std::_Exit(1);
  }
}

namespace {

// The worker's exit code, for `ra` (job_launcher.cpp), in the plan file's directory.
void record_worker_exit(int argc, char** argv, int code) noexcept {
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], "--plan") != 0) continue;
    const std::string plan = argv[i + 1];
    const size_t slash = plan.rfind('/');
    const std::string dir = slash == std::string::npos ? "." : plan.substr(0, slash);
    if (FILE* f = std::fopen((dir + "/" + kWorkerExitFile).c_str(), "w")) {
      std::fprintf(f, "%d\n", code);
      std::fclose(f);
    }
    return;
  }
}

// Our parent when it is Open MPI's per-host daemon (orted), else 0 (mpirun on the launching host).
pid_t parent_daemon() {
  const pid_t parent = getppid();
  std::ifstream comm("/proc/" + std::to_string(parent) + "/comm");
  std::string name;
  return std::getline(comm, name) && name == "orted" ? parent : 0;
}

}  // namespace

int run_pipeline_process(const char* program, int argc, char** argv,
                         int (*run)(transport::MpiSession& mpi, int argc, char** argv)) {
  die_with_parent(program);
  transport::MpiSession mpi(&argc, &argv);
  try {
    const int code = run(mpi, argc, argv);
    if (mpi.rank() == 0) record_worker_exit(argc, argv, code);
    return code;
  } catch (const std::exception& e) {
    report_error(program, mpi.rank(), mpi.host(), e.what());
    remove_registered_segment();
    if (mpi.rank() == 0) record_worker_exit(argc, argv, 1);
    if (mpi.rank() != 0 && dynamic_cast<const transport::PeerError*>(&e) != nullptr) {
      if (const pid_t daemon = parent_daemon(); daemon > 0) {
        std::fprintf(stderr, "%s rank %d on host %s: the worker is lost; ending this host's part of the job "
                     "(Open MPI daemon, pid %d)\n", program, mpi.rank(), mpi.host().c_str(), static_cast<int>(daemon));
        std::fflush(stderr);
        kill(daemon, SIGTERM);
      }
    }
    std::_Exit(1);
  }
}

void report_error(const char* program, int rank, const std::string& host, const char* what) {
  std::fflush(stdout);
  std::fprintf(stderr, "%s rank %d on host %s: error: %s\n", program, rank, host.c_str(), what);
  std::fflush(stderr);
}

}  // namespace ra
