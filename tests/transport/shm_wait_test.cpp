// Blocking waits of the shared-memory Channel (issue 16 item 4): past its spin budget a waiter blocks
// on a futex in the segment, and the peer's next publish wakes it across processes. Checks that a
// receiver and a sender blocked longer than the spin wake when the peer finally writes or reads, that
// the deadline still fires while blocked, and that a closing peer wakes a blocked waiter. Timings are
// printed; the only timing bounds are generous ones (a lost wake-up would show as a deadline).

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "common/error.h"
#include "transport/messages.h"
#include "transport/shm/shm_channel.h"
#include "tests/support/byte_pattern.h"
#include "tests/support/child_exit.h"
#include "tests/support/error_message.h"

namespace ra::transport {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;

constexpr uint32_t kPing = to_wire(MessageKind::kBenchPing);
constexpr uint32_t kBye = to_wire(MessageKind::kShutdown);

double ms_since(SteadyClock::time_point t) {
  return std::chrono::duration<double, std::milli>(SteadyClock::now() - t).count();
}

std::string unique_name() {
  static int counter = 0;
  return fmt::format("ra-shmwait-{}-{}", ::getpid(), counter++);
}

ShmChannelOptions options_for(const std::string& name, std::size_t ring_bytes = 64 << 10) {
  ShmChannelOptions o;
  o.segment_name = name;
  o.peer_name = "test peer";
  o.ring_bytes = ring_bytes;
  o.liveness_timeout = 20s;  // no heartbeat thread: only deadlines and closes end these waits
  o.open_timeout = 20s;
  return o;
}

// A fork()ed peer running body(); it exits with body's value (3 on an exception). The destructor
// reaps (or after 30 s kills) a child the test did not wait for.
class Child {
 public:
  explicit Child(const std::function<int()>& body) {
    std::fflush(nullptr);
    pid_ = ::fork();
    RA_REQUIRE(pid_ >= 0, "fork failed: {}", std::strerror(errno));
    if (pid_ == 0) {
      int rc = 3;
      try {
        rc = body();
      } catch (const std::exception& e) {
        std::fprintf(stderr, "child: %s\n", e.what());
      }
      std::fflush(nullptr);
      ::_exit(rc);
    }
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  ~Child() { wait(); }
  int wait() {
    if (pid_ <= 0) return -1;
    const int code = test::wait_for_exit(pid_, 30s, 1ms);
    pid_ = -1;
    return code;
  }

 private:
  pid_t pid_ = -1;
};

// The peer: for each ping, sleeps the milliseconds its seq names (so the other side is long past its
// spin and blocked), then echoes the payload; on kBye echoes and returns 0.
int slow_echo(const ShmChannelOptions& options) {
  auto channel = open_shm_channel(options);
  std::vector<std::byte> payload;
  for (;;) {
    const MessageHeader h = channel->recv(payload, deadline_after(30s));
    if (h.kind == kBye) {
      channel->send(kBye, h.seq, {}, deadline_after(30s));
      return 0;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(h.seq % 1'000'000));
    channel->send(h.kind + 1, h.seq, payload, deadline_after(30s));
  }
}

void say_bye(Channel& channel, Child& child) {
  std::vector<std::byte> payload;
  channel.send(kBye, 0, {}, deadline_after(10s));
  EXPECT_EQ(channel.recv(payload, deadline_after(10s)).kind, kBye);
  EXPECT_EQ(child.wait(), 0);
}

TEST(ShmWait, BlockedReceiverWakesWhenTheAnswerComesLate) {
  const std::string name = unique_name();
  Child child([&] { return slow_echo(options_for(name)); });
  auto channel = create_shm_channel(options_for(name));
  std::vector<std::byte> reply;
  // Answers after 0 (spin), 0.2, 1, 5 and 30 ms (blocked on the futex), the seq giving the delay in µs.
  for (const uint64_t delay_us : {0, 200, 1000, 5000, 30000}) {
    std::vector<double> late_ms;
    for (int i = 0; i < 10; ++i) {
      const uint64_t seq = static_cast<uint64_t>(i) * 1'000'000 + delay_us;
      const std::vector<std::byte> ping = test::byte_pattern(1000 + i, seq);
      const auto start = SteadyClock::now();
      channel->send(kPing, seq, ping, deadline_after(10s));
      const MessageHeader h = channel->recv(reply, deadline_after(10s));
      const double took = ms_since(start);
      ASSERT_EQ(h.kind, kPing + 1);
      ASSERT_EQ(h.seq, seq);
      ASSERT_TRUE(reply == ping);
      EXPECT_LT(took, 1000.0) << "a wake-up was lost";
      late_ms.push_back(took - static_cast<double>(delay_us) / 1000.0);
    }
    std::sort(late_ms.begin(), late_ms.end());
    std::printf("answer %5.1f ms late: round trip beyond the delay p50 %.3f ms, max %.3f ms\n",
                static_cast<double>(delay_us) / 1000.0, late_ms[late_ms.size() / 2], late_ms.back());
  }
  say_bye(*channel, child);
}

TEST(ShmWait, BlockedSenderWakesWhenTheReaderDrainsLate) {
  const std::string name = unique_name();
  constexpr std::size_t kRing = 4 << 10;
  constexpr std::size_t kBytes = 1 << 20;  // 256 rings' worth: the sender blocks for space many times
  Child child([&] {
    auto channel = open_shm_channel(options_for(name, kRing));
    std::this_thread::sleep_for(50ms);  // the sender fills the ring and blocks
    std::vector<std::byte> payload;
    const MessageHeader h = channel->recv(payload, deadline_after(30s));
    const bool ok = h.bytes == kBytes && payload == test::byte_pattern(kBytes, 7);
    channel->send(kPing + 1, ok ? 1 : 0, {}, deadline_after(30s));
    return ok ? 0 : 1;
  });
  auto channel = create_shm_channel(options_for(name, kRing));
  const std::vector<std::byte> big = test::byte_pattern(kBytes, 7);
  const auto start = SteadyClock::now();
  channel->send(kPing, 1, big, deadline_after(10s));
  std::vector<std::byte> reply;
  EXPECT_EQ(channel->recv(reply, deadline_after(10s)).seq, 1u);  // the child checked every byte
  const double took = ms_since(start);
  std::printf("1 MiB through a 4 KiB ring, reader 50 ms late: %.1f ms\n", took);
  EXPECT_LT(took, 5000.0);
  EXPECT_EQ(child.wait(), 0);
}

TEST(ShmWait, DeadlineFiresWhileBlockedAndTheChannelStaysUsable) {
  const std::string name = unique_name();
  Child child([&] { return slow_echo(options_for(name)); });
  auto channel = create_shm_channel(options_for(name));
  std::vector<std::byte> reply;
  channel->send(kPing, 0, {}, deadline_after(10s));
  ASSERT_EQ(channel->recv(reply, deadline_after(10s)).seq, 0u);  // attached and answering
  const auto start = SteadyClock::now();
  const std::string error = test::error_of<PeerError>([&] { channel->recv(reply, deadline_after(300ms)); });
  const double waited = ms_since(start);
  EXPECT_THAT(error, HasSubstr("test peer: timed out after"));
  EXPECT_THAT(error, HasSubstr("waiting for a message"));
  EXPECT_GE(waited, 300.0);
  EXPECT_LT(waited, 1500.0);
  // A message that comes after a timed-out wait is still delivered.
  channel->send(kPing, 2000, {}, deadline_after(10s));  // answered 2 ms later
  EXPECT_EQ(channel->recv(reply, deadline_after(10s)).seq, 2000u);
  say_bye(*channel, child);
}

TEST(ShmWait, ClosingPeerWakesABlockedReceiver) {
  const std::string name = unique_name();
  Child child([&] {
    auto channel = open_shm_channel(options_for(name));
    channel->send(kPing, 1, {}, deadline_after(30s));
    std::this_thread::sleep_for(100ms);  // the other side is blocked in recv by now
    return 0;                            // the channel closes as the child leaves
  });
  auto channel = create_shm_channel(options_for(name));
  std::vector<std::byte> reply;
  ASSERT_EQ(channel->recv(reply, deadline_after(10s)).seq, 1u);
  const auto start = SteadyClock::now();
  const std::string error = test::error_of<PeerError>([&] { channel->recv(reply, deadline_after(10s)); });
  EXPECT_THAT(error, HasSubstr("closed the channel"));
  EXPECT_LT(ms_since(start), 1000.0);
  EXPECT_EQ(child.wait(), 0);
}

}  // namespace
}  // namespace ra::transport
