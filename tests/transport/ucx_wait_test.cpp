// Blocking waits of the UCX Channel (issue 16 item 4): past its spin a wait arms the worker and polls
// its event fd. Checks, between two real processes, that a receiver blocked longer than the spin wakes
// when the answer finally comes, also while another thread of its process keeps progressing the worker
// (heartbeat(): that thread may take the message in, and must then wake the sleeper), and that the
// deadline still fires while blocked. Timings are printed; the only bounds are generous ones.

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <functional>
#include <thread>

#include "transport/messages.h"
#include "transport/ucx/ucx_channel.h"
#include "tests/support/byte_pattern.h"
#include "tests/support/child_exit.h"
#include "tests/support/error_message.h"
#include "tests/support/ping_pong.h"
#include "tests/support/pipe_blob.h"

namespace ra::transport {
namespace {

using namespace std::chrono_literals;
using test::kPing, test::kPong, test::kShutdown;
using test::read_all, test::recv_blob, test::send_blob, test::write_all;
using ::testing::HasSubstr;

// A forked peer with its own UcxWorker (made after the fork); the two swap addresses over pipes.
class Child {
 public:
  explicit Child(const std::function<void(UcxWorker&, std::span<const std::byte>)>& body) {
    int down[2], up[2];
    RA_REQUIRE(::pipe(down) == 0 && ::pipe(up) == 0, "pipe: {}", std::strerror(errno));
    pid_ = ::fork();
    RA_REQUIRE(pid_ >= 0, "fork: {}", std::strerror(errno));
    if (pid_ == 0) {
      int code = 0;
      try {
        UcxWorker worker;
        send_blob(up[1], worker.local_address());
        body(worker, recv_blob(down[0]));
      } catch (const std::exception& e) {
        std::fprintf(stderr, "child: %s\n", e.what());
        code = 1;
      }
      std::fflush(stderr);
      ::_exit(code);
    }
    ::close(down[0]);
    ::close(up[1]);
    to_child_ = down[1];
    from_child_ = up[0];
  }
  ~Child() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    ::close(to_child_);
    ::close(from_child_);
  }
  std::vector<std::byte> connect_worker(const UcxWorker& parent) {
    std::vector<std::byte> child_address = recv_blob(from_child_);
    send_blob(to_child_, parent.local_address());
    return child_address;
  }
  int wait() {
    const int code = test::wait_for_exit(pid_, 20s, 5ms);
    pid_ = -1;
    return code;
  }

 private:
  pid_t pid_ = -1;
  int to_child_ = -1;
  int from_child_ = -1;
};

// The peer: answers each kPing after sleeping the microseconds its seq names, until kShutdown.
void slow_echo(UcxWorker& worker, std::span<const std::byte> parent) {
  auto channel = worker.connect(parent, {"test parent", 20s, 1});
  std::vector<std::byte> payload;
  for (;;) {
    const MessageHeader h = channel->recv(payload, deadline_after(30s));
    if (h.kind == kShutdown) {
      channel->send(kShutdown, h.seq, {}, deadline_after(5s));
      return;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(h.seq % 1'000'000));
    channel->send(kPong, h.seq, payload, deadline_after(30s));
  }
}

// Ends the echo, then closes our end before waiting for the child: each end's close flushes, which
// needs the other end to progress, so closing both at once keeps either from waiting for its timeout.
void shut_down(std::unique_ptr<Channel>& channel, Child& child) {
  std::vector<std::byte> reply;
  channel->send(kShutdown, 0, {}, deadline_after(5s));
  EXPECT_EQ(channel->recv(reply, deadline_after(5s)).kind, kShutdown);
  channel.reset();
  EXPECT_EQ(child.wait(), 0);
}

double ms_since(SteadyClock::time_point t) {
  return std::chrono::duration<double, std::milli>(SteadyClock::now() - t).count();
}

// Late answers (0 to 30 ms) arrive whole and in order; with `beating`, another thread of this process
// calls heartbeat() (and so progresses the worker) every millisecond meanwhile.
void late_answers(bool beating) {
  Child child(slow_echo);
  UcxWorker worker;
  auto channel = worker.connect(child.connect_worker(worker), {"test child", 20s, 1});
  std::jthread beats;
  if (beating) {
    beats = std::jthread([&](std::stop_token stop) {
      while (!stop.stop_requested()) {
        channel->heartbeat();
        std::this_thread::sleep_for(1ms);
      }
    });
  }
  std::vector<std::byte> reply;
  for (const uint64_t delay_us : {0, 200, 1000, 5000, 30000}) {
    std::vector<double> late_ms;
    for (int i = 0; i < 8; ++i) {
      const uint64_t seq = static_cast<uint64_t>(i) * 1'000'000 + delay_us;
      const std::vector<std::byte> ping = test::byte_pattern(500 + i, seq);
      const auto start = SteadyClock::now();
      channel->send(kPing, seq, ping, deadline_after(10s));
      const MessageHeader h = channel->recv(reply, deadline_after(10s));
      const double took = ms_since(start);
      ASSERT_EQ(h.kind, kPong);
      ASSERT_EQ(h.seq, seq);
      ASSERT_TRUE(reply == ping);
      EXPECT_LT(took, 1000.0) << "a wake-up was lost";
      late_ms.push_back(took - static_cast<double>(delay_us) / 1000.0);
    }
    std::sort(late_ms.begin(), late_ms.end());
    std::printf("%s: answer %5.1f ms late: beyond the delay p50 %.3f ms, max %.3f ms\n",
                beating ? "with heartbeats" : "alone", static_cast<double>(delay_us) / 1000.0,
                late_ms[late_ms.size() / 2], late_ms.back());
  }
  beats = {};
  shut_down(channel, child);
}

TEST(UcxWait, BlockedReceiverWakesWhenTheAnswerComesLate) { late_answers(false); }

TEST(UcxWait, BlockedReceiverWakesWhileAnotherThreadProgresses) { late_answers(true); }

TEST(UcxWait, DeadlineFiresWhileBlockedAndTheChannelStaysUsable) {
  Child child(slow_echo);
  UcxWorker worker;
  auto channel = worker.connect(child.connect_worker(worker), {"test child", 20s, 1});
  std::vector<std::byte> reply;
  channel->send(kPing, 0, {}, deadline_after(10s));
  ASSERT_EQ(channel->recv(reply, deadline_after(10s)).seq, 0u);
  const auto start = SteadyClock::now();
  const std::string error = test::error_of<PeerError>([&] { channel->recv(reply, deadline_after(300ms)); });
  const double waited = ms_since(start);
  EXPECT_THAT(error, HasSubstr("timed out waiting for a message from test child"));
  EXPECT_GE(waited, 300.0);
  EXPECT_LT(waited, 1500.0);
  channel->send(kPing, 2000, {}, deadline_after(10s));  // answered 2 ms later
  EXPECT_EQ(channel->recv(reply, deadline_after(10s)).seq, 2000u);
  shut_down(channel, child);
}

}  // namespace
}  // namespace ra::transport
