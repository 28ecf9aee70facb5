// run_forwarding_signals: the foreground child of `ra generate` and `ra bench transport` (mpirun). Its exit
// code comes back as the shell would report it, a signal sent to `ra` reaches the child, and the child
// does not outlive a SIGKILLed `ra`.

#include "launcher/control/child_process.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <sys/wait.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
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

// Once the bound's event has happened, a child that does not end is killed after the grace, with its
// process group (a child that ignores SIGTERM too).
TEST(ChildProcess, ABoundKillsAChildThatOutlivesTheEventByTheGrace) {
  const auto start = std::chrono::steady_clock::now();
  auto since = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(); };
  const ExitBound bound{[&] { return since() > 0.2; }, std::chrono::milliseconds(300), "the test's event"};
  bool hit = false;
  EXPECT_EQ(run_forwarding_signals({"sh", "-c", "trap '' TERM; sleep 30 & wait; wait"}, &bound, &hit), 128 + SIGKILL);
  EXPECT_TRUE(hit);
  EXPECT_GT(since(), 0.45);
  EXPECT_LT(since(), 5.0);
}

// A child that ends by itself is left alone, before or after the event.
TEST(ChildProcess, ABoundLeavesAChildThatEndsInTime) {
  bool event = false;
  const ExitBound bound{[&] { return event; }, std::chrono::milliseconds(5000), "never"};
  bool hit = true;
  EXPECT_EQ(run_forwarding_signals({"sh", "-c", "sleep 0.2; exit 4"}, &bound, &hit), 4);
  EXPECT_FALSE(hit);
  const ExitBound now{[] { return true; }, std::chrono::milliseconds(5000), "at once"};
  EXPECT_EQ(run_forwarding_signals({"sh", "-c", "sleep 0.2; exit 5"}, &now, &hit), 5);
  EXPECT_FALSE(hit);
}

// A process running run_forwarding_signals is SIGKILLed (nothing can be forwarded): the kernel ends
// its child (PR_SET_PDEATHSIG) instead of leaving it to run on as an orphan.
TEST(ChildProcess, TheChildDiesWithItsParent) {
  char dir_template[] = "/tmp/ra-child-test.XXXXXX";
  ASSERT_NE(mkdtemp(dir_template), nullptr);
  const std::string pid_file = std::string(dir_template) + "/child.pid";
  const pid_t launcher = fork();
  ASSERT_GE(launcher, 0);
  if (launcher == 0) {
    _exit(run_forwarding_signals({"sh", "-c", "echo $$ > " + pid_file + "; exec sleep 60"}));
  }
  pid_t child = 0;
  for (int i = 0; i < 200 && child <= 0; ++i) {  // until the grandchild has written its pid
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
    std::ifstream in(pid_file);
    in >> child;
  }
  ASSERT_GT(child, 0) << "the child never started";
  kill(launcher, SIGKILL);
  int status = 0;
  waitpid(launcher, &status, 0);
  // Gone: no such process, or a zombie (reparented to a process that does not reap, as a container's
  // pid 1 may be).
  auto ended = [](pid_t pid) {
    if (kill(pid, 0) != 0 && errno == ESRCH) return true;
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string pid_field, comm, state;
    stat >> pid_field >> comm >> state;
    return state == "Z";
  };
  bool gone = false;
  for (int i = 0; i < 200 && !gone; ++i) {
    gone = ended(child);
    if (!gone) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (!gone) kill(child, SIGKILL);
  EXPECT_TRUE(gone) << "the child (pid " << child << ") outlived its SIGKILLed parent by 2 s";
  std::remove(pid_file.c_str());
  rmdir(dir_template);
}

}  // namespace
}  // namespace ra
