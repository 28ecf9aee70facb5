#pragma once
// Running mpirun (or any child) in the foreground of `ra`: the jobs and `ra bench transport` start it
// this way.

#include <string>
#include <vector>

namespace ra {

// Runs argv (argv[0] looked up in PATH) to completion and returns its exit code, 128 + N when it died of
// signal N, 127 when it could not be started. The child gets its own process group, so a terminal's
// Ctrl-C reaches it once, through us: SIGINT, SIGTERM and SIGHUP sent to this process are forwarded to
// it while it runs (mpirun then stops every rank), and the previous handlers are restored afterwards.
// The child gets SIGTERM from the kernel if this process dies first (PR_SET_PDEATHSIG: a SIGKILL of
// `ra` cannot be forwarded), and a death by a signal this process did not forward is reported on stderr.
int run_forwarding_signals(const std::vector<std::string>& argv);

}  // namespace ra
