// run_forwarding_signals: the foreground child of `ra generate` and `ra bench transport` (mpirun). Its exit
// code comes back as the shell would report it, and a signal sent to `ra` reaches the child.

#include "launcher/control/child_process.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <thread>

namespace ra {
namespace {

TEST(ChildProcess, ReturnsTheExitCode) {
  EXPECT_EQ(run_forwarding_signals({"sh", "-c", "exit 0"}), 0);
  EXPECT_EQ(run_forwarding_signals({"sh", "-c", "exit 3"}), 3);
}

TEST(ChildProcess, DeathBySignalIs128PlusItsNumber) {
  EXPECT_EQ(run_forwarding_signals({"sh", "-c", "kill -KILL $$"}), 128 + SIGKILL);
}

TEST(ChildProcess, AMissingProgramIs127) {
  EXPECT_EQ(run_forwarding_signals({"ra-no-such-program-anywhere"}), 127);
}

// SIGTERM sent to this process goes to the child (which dies of it), not to us; afterwards our previous
// handler is back.
TEST(ChildProcess, ForwardsSigtermToTheChildAndRestoresTheHandler) {
  struct sigaction ignore {}, before {};
  ignore.sa_handler = SIG_IGN;
  sigemptyset(&ignore.sa_mask);
  sigaction(SIGTERM, &ignore, &before);

  std::thread sender([] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    kill(getpid(), SIGTERM);
  });
  const auto start = std::chrono::steady_clock::now();
  const int code = run_forwarding_signals({"sleep", "30"});
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  sender.join();
  EXPECT_EQ(code, 128 + SIGTERM);
  EXPECT_LT(seconds, 20.0) << "the child ran on: the signal was not forwarded";

  struct sigaction after {};
  sigaction(SIGTERM, nullptr, &after);
  EXPECT_EQ(after.sa_handler, SIG_IGN);
  sigaction(SIGTERM, &before, nullptr);
}

}  // namespace
}  // namespace ra
