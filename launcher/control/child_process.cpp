#include "launcher/control/child_process.h"

#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <iterator>
#include <optional>
#include <thread>

#include "common/error.h"

namespace ra {
namespace {

// Lock-free atomics, not volatile sig_atomic_t: the handler may run on any thread of the process.
std::atomic<pid_t> g_child{0};
std::atomic<int> g_early{0};  // a signal that came before the child's pid was known
std::atomic<int> g_forwarded{0};  // the last signal forwarded to the child
static_assert(std::atomic<pid_t>::is_always_lock_free && std::atomic<int>::is_always_lock_free,
              "signal handlers may only use lock-free atomics");

extern "C" void forward_to_child(int sig) {
  const pid_t child = g_child.load();
  g_forwarded.store(sig);
  if (child > 0) {
    kill(child, sig);
  } else {
    g_early.store(sig);
  }
}

constexpr int kForwarded[] = {SIGINT, SIGTERM, SIGHUP};

void wait_for(pid_t child, int& status) {
  while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
}

// Waits for `child`, killing it (its process group: mpirun and the agents it started) once bound.over()
// has been true for bound.grace. Returns whether it had to. SIGKILL, not SIGTERM: an mpirun that still
// waits for an unreachable daemon is already aborting, and takes a second SIGTERM as "terminate
// forcibly", which in Open MPI 4.1 crashes in PMIx_Finalize with a stack dump.
bool wait_bounded(pid_t child, int& status, const ExitBound& bound, const std::string& program) {
  using Clock = std::chrono::steady_clock;
  std::optional<Clock::time_point> over_at;
  bool killed = false;
  for (;;) {
    const pid_t r = waitpid(child, &status, WNOHANG);
    if (r == child || (r < 0 && errno != EINTR)) return killed;
    const auto now = Clock::now();
    if (!over_at && bound.over()) over_at = now;
    if (over_at && !killed && now - *over_at >= bound.grace) {
      std::fprintf(stderr, "ra: %s still runs %.1f s after %s (a host of the job may be unreachable); killing it\n",
                   program.c_str(), std::chrono::duration<double>(now - *over_at).count(), bound.event.c_str());
      g_forwarded.store(SIGKILL);
      kill(-child, SIGKILL);
      killed = true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

}  // namespace

int last_forwarded_stop_signal() {
  const int sig = g_forwarded.load();
  return std::find(std::begin(kForwarded), std::end(kForwarded), sig) != std::end(kForwarded) ? sig : 0;
}

int run_forwarding_signals(const std::vector<std::string>& argv, const ExitBound* bound, bool* bound_hit) {
  RA_REQUIRE(!argv.empty(), "run_forwarding_signals: no command");
  std::vector<char*> cargv;
  for (const std::string& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);

  // This thread blocks the signals from before the fork until g_child is set, and one that another
  // thread takes in between is kept in g_early and sent on: a Ctrl-C at start-up is not lost.
  sigset_t forwarded, old_mask;
  sigemptyset(&forwarded);
  for (const int sig : kForwarded) sigaddset(&forwarded, sig);
  struct sigaction sa {};
  sa.sa_handler = forward_to_child;
  sigemptyset(&sa.sa_mask);
  struct sigaction old_actions[std::size(kForwarded)];
  g_early.store(0);
  g_forwarded.store(0);
  const pid_t parent = getpid();
  pthread_sigmask(SIG_BLOCK, &forwarded, &old_mask);
  for (size_t i = 0; i < std::size(kForwarded); ++i) sigaction(kForwarded[i], &sa, &old_actions[i]);

  std::fflush(stdout);
  std::fflush(stderr);
  const pid_t child = fork();
  if (child == 0) {
    setpgid(0, 0);
    // The child (mpirun) must not outlive us: SIGKILL of `ra` cannot be forwarded, so the kernel sends
    // it SIGTERM when we die (mpirun then stops every rank). A parent that died before the prctl is
    // seen by the getppid() check.
    if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0 || getppid() != parent) _exit(128 + SIGTERM);
    // Default dispositions before unblocking, so a signal already pending here ends the child as it
    // would end the program, instead of reaching a handler that knows no child.
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    for (const int sig : kForwarded) sigaction(sig, &dfl, nullptr);
    pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
    execvp(cargv[0], cargv.data());
    std::fprintf(stderr, "ra: cannot run %s: %s\n", cargv[0], std::strerror(errno));
    _exit(127);
  }
  const int fork_errno = errno;
  if (child > 0) {
    g_child.store(child);
    if (const int early = g_early.load(); early != 0) kill(child, early);
  }
  pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
  int status = 0;
  bool hit = false;
  if (child > 0) {
    if (bound != nullptr) {
      hit = wait_bounded(child, status, *bound, argv[0]);
    } else {
      wait_for(child, status);
    }
  }
  if (bound_hit != nullptr) *bound_hit = hit;
  g_child.store(0);
  for (size_t i = 0; i < std::size(kForwarded); ++i) sigaction(kForwarded[i], &old_actions[i], nullptr);
  RA_REQUIRE(child > 0, "cannot start {}: fork failed: {}", argv[0], std::strerror(fork_errno));
  if (WIFSIGNALED(status) && WTERMSIG(status) != g_forwarded.load()) {  // not our forwarding: say who
    const char* abbrev = sigabbrev_np(WTERMSIG(status));
    std::fprintf(stderr, "ra: %s was killed by signal %d (SIG%s)\n", argv[0].c_str(), WTERMSIG(status),
                 abbrev != nullptr ? abbrev : "?");
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

}  // namespace ra
