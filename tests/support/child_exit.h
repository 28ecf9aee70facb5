#pragma once
// Waiting for a forked test child: the transport tests run each peer as a child process.

#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <chrono>
#include <thread>

namespace ra::test {

// The child's exit code, 128 + signal when a signal ended it, or -1 when it was still running after
// `timeout` (then it is killed and reaped). Polls every `poll`.
inline int wait_for_exit(pid_t pid, std::chrono::milliseconds timeout, std::chrono::milliseconds poll) {
  const auto give_up = std::chrono::steady_clock::now() + timeout;
  int status = 0;
  while (::waitpid(pid, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > give_up) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      return -1;
    }
    std::this_thread::sleep_for(poll);
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

}  // namespace ra::test
