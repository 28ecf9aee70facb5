#pragma once
// Running mpirun (or any child) in the foreground of `ra`: the jobs and `ra bench transport` start it
// this way.

#include <chrono>
#include <functional>
#include <string>
#include <vector>

namespace ra {

// Bounds the child's life after an event it may not end by itself: once `over()` is true, the child has
// `grace` to exit, then its process group gets SIGKILL. For mpirun after the worker rank exited: mpirun
// waits for every daemon to confirm its ranks ended, without a deadline, and a host cut off from the
// network never does.
struct ExitBound {
  std::function<bool()> over;  // polled every 20 ms
  std::chrono::milliseconds grace{0};
  std::string event;           // for the message: "the worker rank exited"
};

// Runs argv (argv[0] looked up in PATH) to completion and returns its exit code, 128 + N when it died of
// signal N, 127 when it could not be started. The child gets its own process group, so a terminal's
// Ctrl-C reaches it once, through us: SIGINT, SIGTERM and SIGHUP sent to this process are forwarded to
// it while it runs (mpirun then stops every rank), and the previous handlers are restored afterwards.
// The child gets SIGTERM from the kernel if this process dies first (PR_SET_PDEATHSIG: a SIGKILL of
// `ra` cannot be forwarded), and a death by a signal this process did not forward is reported on stderr.
// With `bound`, the child is stopped as ExitBound says, and *bound_hit (when given) tells whether it was.
int run_forwarding_signals(const std::vector<std::string>& argv, const ExitBound* bound = nullptr,
                           bool* bound_hit = nullptr);

// The signal (SIGINT, SIGTERM or SIGHUP) this process received and forwarded during the last
// run_forwarding_signals, or 0: whether the child ended because someone asked this process to stop.
int last_forwarded_stop_signal();

}  // namespace ra
