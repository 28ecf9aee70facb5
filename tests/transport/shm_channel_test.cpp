// The shared-memory Channel (transport/shm/shm_channel.h) between real processes: the far end runs in a
// fork()ed child, which reports through its exit code (0 = all its checks passed). Covers ordering and
// byte-exactness of small and ring-sized-and-larger messages, deadlines, a killed, a stopped and a
// closing peer, a message truncated by a killed sender, /dev/shm hygiene, heartbeats from a second
// thread, and reports the 64 B and 16 KiB ping-pong latency.

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "common/error.h"
#include "common/splitmix64.h"
#include "transport/heartbeat.h"
#include "transport/messages.h"
#include "transport/shm/shm_channel.h"
#include "tests/support/byte_pattern.h"
#include "tests/support/child_exit.h"
#include "tests/support/error_message.h"
#include "tests/support/sanitizer.h"

namespace ra::transport {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr uint32_t kEchoShutdown = to_wire(MessageKind::kShutdown);
constexpr uint32_t kReady = to_wire(MessageKind::kHello);
constexpr auto kChildWait = 30s;  // every wait in a child ends by then, so no child outlives a failed test

long long elapsed_ms(SteadyClock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(SteadyClock::now() - start).count();
}

// A segment name prefix unique to this process, test and call, so parallel ctest runs never collide.
std::string unique_prefix() {
  static int counter = 0;
  std::string test = ::testing::UnitTest::GetInstance()->current_test_info()->name();
  std::replace(test.begin(), test.end(), '/', '.');  // parameterised names: "Name/Param"
  return fmt::format("ra-shmtest-{}-{}-{}-", ::getpid(), test, counter++);
}

ShmChannelOptions shm_options(const std::string& name, const std::string& peer, std::size_t ring_bytes = 64 << 10) {
  ShmChannelOptions options;
  options.segment_name = name;
  options.peer_name = peer;
  options.ring_bytes = ring_bytes;
  options.open_timeout = 20s;
  return options;
}

// Bytes of `bytes` that differ from test::byte_pattern(bytes.size(), seed), computed without a second buffer.
std::size_t count_mismatches(std::span<const std::byte> bytes, uint64_t seed) {
  SplitMix64 rng(seed);
  std::size_t bad = 0;
  for (std::size_t i = 0; i < bytes.size(); i += 8) {
    const uint64_t word = rng.next();
    const std::size_t n = std::min<std::size_t>(8, bytes.size() - i);
    for (std::size_t j = 0; j < n; ++j) bad += bytes[i + j] != reinterpret_cast<const std::byte*>(&word)[j];
  }
  return bad;
}

// The message of the PeerError that f() throws (a test failure when nothing is).
template <typename E = PeerError, typename F>
std::string error_of(F&& f) {
  return test::error_of<E>(f);
}

// A fork()ed child running body(); it exits with body's return value, 3 on an exception (printed).
// The destructor SIGKILLs and reaps a child the test did not wait for.
class Child {
 public:
  explicit Child(const std::function<int()>& body) {
    std::fflush(nullptr);
    pid_ = ::fork();
    RA_REQUIRE(pid_ >= 0, "fork failed: {}", std::strerror(errno));
    if (pid_ == 0) {
      int rc = 2;
      try {
        rc = body();
      } catch (const std::exception& e) {
        std::fprintf(stderr, "child %d: %s\n", ::getpid(), e.what());
        rc = 3;
      }
      std::fflush(nullptr);
      ::_exit(rc);
    }
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  ~Child() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      wait();
    }
  }

  pid_t pid() const { return pid_; }
  void signal(int sig) const { ::kill(pid_, sig); }

  // The child's exit code, 128 + signal if a signal ended it, or -1 if it was still running at the
  // timeout (it is killed then).
  int wait(std::chrono::milliseconds timeout = 40s) {
    const int code = test::wait_for_exit(pid_, timeout, 1ms);
    pid_ = -1;
    return code;
  }

 private:
  pid_t pid_ = -1;
};

// A one-way "it happened" signal between processes.
class Pipe {
 public:
  Pipe() { RA_REQUIRE(::pipe(fds_) == 0, "pipe failed: {}", std::strerror(errno)); }
  ~Pipe() {
    ::close(fds_[0]);
    ::close(fds_[1]);
  }
  void signal() const {
    const char byte = 1;
    RA_ASSERT(::write(fds_[1], &byte, 1) == 1);
  }
  bool wait(std::chrono::milliseconds timeout) const {
    pollfd p{fds_[0], POLLIN, 0};
    char byte = 0;
    return ::poll(&p, 1, static_cast<int>(timeout.count())) == 1 && ::read(fds_[0], &byte, 1) == 1;
  }

 private:
  int fds_[2] = {-1, -1};
};

std::unique_ptr<Channel> make_end(const ShmChannelOptions& options, bool create) {
  return create ? create_shm_channel(options) : open_shm_channel(options);
}

// The child's end of most tests: answers every message with kind + 1, same seq, same payload, until
// kShutdown, which it echoes before returning 0.
int echo_server(const ShmChannelOptions& options, bool create) {
  auto channel = make_end(options, create);
  HeartbeatThread heartbeat({channel.get()});
  std::vector<std::byte> payload;
  for (;;) {
    const MessageHeader header = channel->recv(payload, deadline_after(kChildWait));
    if (header.kind == kEchoShutdown) {
      channel->send(kEchoShutdown, header.seq, {}, deadline_after(kChildWait));
      return 0;
    }
    channel->send(header.kind + 1, header.seq, payload, deadline_after(kChildWait));
  }
}

// The child's end for liveness tests: attaches, says kReady, then waits for a message that never comes.
int ready_then_wait(const ShmChannelOptions& options, bool create) {
  auto channel = make_end(options, create);
  HeartbeatThread heartbeat({channel.get()});
  channel->send(kReady, 0, {}, deadline_after(kChildWait));
  std::vector<std::byte> payload;
  channel->recv(payload, deadline_after(kChildWait));
  return 0;
}

void shut_down_echo(Channel& channel, Child& child) {
  std::vector<std::byte> payload;
  channel.send(kEchoShutdown, 99, {}, deadline_after(10s));
  const MessageHeader header = channel.recv(payload, deadline_after(10s));
  EXPECT_EQ(header.kind, kEchoShutdown);
  EXPECT_EQ(child.wait(), 0);
}

TEST(ShmChannel, RejectsBadOptionsWithClearErrors) {
  const std::string prefix = unique_prefix();
  ShmChannelOptions options = shm_options("", "x");
  EXPECT_THAT(error_of<Error>([&] { create_shm_channel(options); }), HasSubstr("segment_name is empty"));
  EXPECT_THAT(error_of<Error>([&] { open_shm_channel(options); }), HasSubstr("segment_name is empty"));
  options.segment_name = prefix + "a/b";
  EXPECT_THAT(error_of<Error>([&] { create_shm_channel(options); }), HasSubstr("no '/'"));
  options.segment_name = prefix + "small";
  options.ring_bytes = 1024;
  EXPECT_THAT(error_of<Error>([&] { create_shm_channel(options); }), HasSubstr("ring_bytes 1024 is too small"));
  options.ring_bytes = 3 * 4096;
  EXPECT_THAT(error_of<Error>([&] { create_shm_channel(options); }), HasSubstr("must be a power of two"));
  options.ring_bytes = 4096;
  options.liveness_timeout = 0ms;
  EXPECT_THAT(error_of<Error>([&] { create_shm_channel(options); }), HasSubstr("liveness_timeout must be positive"));
  EXPECT_THAT(list_shm_segments(prefix), ::testing::IsEmpty());
}

TEST(ShmChannel, OpenTimesOutWhenNoSegmentAppears) {
  ShmChannelOptions options = shm_options(unique_prefix() + "absent", "retriever rank 3");
  options.open_timeout = 150ms;
  const auto start = SteadyClock::now();
  const std::string error = error_of([&] { open_shm_channel(options); });
  EXPECT_THAT(error, HasSubstr("retriever rank 3: timed out after"));
  EXPECT_THAT(error, HasSubstr(options.segment_name));
  EXPECT_GE(elapsed_ms(start), 150);
  EXPECT_LT(elapsed_ms(start), 2000);
}

TEST(ShmChannel, SmallMessagesRoundTripInOrder) {
  const std::string name = unique_prefix() + "r0";
  Child child([&] { return echo_server(shm_options(name, "test parent"), /*create=*/false); });
  auto channel = create_shm_channel(shm_options(name, "test child"));
  EXPECT_EQ(channel->peer_name(), "test child");

  // Windows of 8 messages in flight (8 x <= 3 KiB fits one 64 KiB ring), sizes 0..3000 bytes.
  constexpr int kMessages = 1200;
  constexpr int kWindow = 8;
  auto size_of = [](int i) { return i % 7 == 0 ? std::size_t{0} : static_cast<std::size_t>(i * 37 % 3001); };
  std::vector<std::byte> payload;
  int mismatched = 0;
  for (int first = 0; first < kMessages; first += kWindow) {
    for (int i = first; i < first + kWindow; ++i) {
      channel->send(to_wire(MessageKind::kStep), i, test::byte_pattern(size_of(i), i), deadline_after(10s));
    }
    for (int i = first; i < first + kWindow; ++i) {
      const MessageHeader header = channel->recv(payload, deadline_after(10s));
      ASSERT_EQ(header.kind, to_wire(MessageKind::kStep) + 1);
      ASSERT_EQ(header.seq, static_cast<uint64_t>(i)) << "out of order";
      ASSERT_EQ(header.bytes, size_of(i));
      ASSERT_EQ(payload.size(), size_of(i));
      mismatched += count_mismatches(payload, i) != 0;
    }
  }
  EXPECT_EQ(mismatched, 0);

  MessageHeader header{};
  EXPECT_FALSE(channel->try_recv(header, payload));  // nothing pending, and the child is alive
  channel->send(to_wire(MessageKind::kStep), 5000, test::byte_pattern(100, 5000), deadline_after(10s));
  const auto start = SteadyClock::now();
  bool got = false;
  while (!got && elapsed_ms(start) < 10000) got = channel->try_recv(header, payload);
  ASSERT_TRUE(got);
  EXPECT_EQ(header.seq, 5000u);
  EXPECT_EQ(count_mismatches(payload, 5000), 0u);

  shut_down_echo(*channel, child);
  EXPECT_THAT(list_shm_segments(name), ::testing::IsEmpty());
}

TEST(ShmChannel, LargeMessageThroughSmallRingIsByteExact) {
  const std::string name = unique_prefix() + "r0";
  constexpr std::size_t kBytes = 20'000'003;  // 20 MB, not a multiple of the word, chunk or ring size
  const std::vector<std::byte> sent = test::byte_pattern(kBytes, 42);
  Child child([&] { return echo_server(shm_options(name, "test parent"), /*create=*/true); });
  auto channel = open_shm_channel(shm_options(name, "test child"));
  HeartbeatThread heartbeat({channel.get()});  // the comparisons below take seconds under TSan
  std::vector<std::byte> received;
  channel->send(to_wire(MessageKind::kBuild), 1, sent, deadline_after(30s));
  MessageHeader header = channel->recv(received, deadline_after(30s));
  EXPECT_EQ(header.seq, 1u);
  ASSERT_EQ(received.size(), kBytes);
  EXPECT_TRUE(received == sent) << count_mismatches(received, 42) << " bytes differ";

  // The same size again lands in the same buffer: recv reuses the capacity.
  const std::byte* buffer = received.data();
  const std::size_t capacity = received.capacity();
  std::fill(received.begin(), received.end(), std::byte{0});
  channel->send(to_wire(MessageKind::kBuild), 2, sent, deadline_after(30s));
  header = channel->recv(received, deadline_after(30s));
  EXPECT_EQ(header.seq, 2u);
  EXPECT_EQ(received.data(), buffer);
  EXPECT_EQ(received.capacity(), capacity);
  EXPECT_TRUE(received == sent) << count_mismatches(received, 42) << " bytes differ";

  shut_down_echo(*channel, child);
}

TEST(ShmChannel, HundredMegabytesThroughDefaultRing) {
  const std::string name = unique_prefix() + "r0";
  constexpr std::size_t kBytes = 100u << 20;
  // The child checks every byte as it arrives and answers with the count of wrong bytes.
  Child child([&] {
    auto channel = open_shm_channel(shm_options(name, "test parent", 0));
    HeartbeatThread heartbeat({channel.get()});
    std::vector<std::byte> payload;
    const MessageHeader header = channel->recv(payload, deadline_after(kChildWait));
    const uint64_t verdict[2] = {payload.size(), count_mismatches(payload, header.seq)};
    channel->send(header.kind + 1, header.seq, std::as_bytes(std::span(verdict)), deadline_after(kChildWait));
    return 0;
  });
  ShmChannelOptions options = shm_options(name, "test child");
  options.ring_bytes = ShmChannelOptions{}.ring_bytes;
  ASSERT_EQ(options.ring_bytes, 4u << 20);
  const std::vector<std::byte> sent = test::byte_pattern(kBytes, 7);
  auto channel = create_shm_channel(options);
  HeartbeatThread heartbeat({channel.get()});
  channel->send(to_wire(MessageKind::kBuild), 7, sent, deadline_after(60s));
  std::vector<std::byte> reply;
  channel->recv(reply, deadline_after(60s));
  ASSERT_EQ(reply.size(), 16u);
  uint64_t verdict[2];
  std::memcpy(verdict, reply.data(), sizeof(verdict));
  EXPECT_EQ(verdict[0], kBytes);
  EXPECT_EQ(verdict[1], 0u);
  EXPECT_EQ(child.wait(), 0);
}

TEST(ShmChannel, DeadlineFiresWhenNoMessageComesAndChannelStaysUsable) {
  const std::string name = unique_prefix() + "r0";
  Child child([&] { return echo_server(shm_options(name, "test parent"), /*create=*/false); });
  ShmChannelOptions options = shm_options(name, "retriever rank 5");
  options.liveness_timeout = 300ms;  // shorter than the deadline: heartbeats alone must keep the peer alive
  auto channel = create_shm_channel(options);
  std::vector<std::byte> payload;
  channel->send(to_wire(MessageKind::kStep), 1, {}, deadline_after(10s));
  ASSERT_EQ(channel->recv(payload, deadline_after(10s)).seq, 1u);  // the child is attached and answering

  const auto start = SteadyClock::now();
  const std::string error = error_of([&] { channel->recv(payload, deadline_after(800ms)); });
  const long long waited = elapsed_ms(start);
  EXPECT_THAT(error, HasSubstr("retriever rank 5: timed out after"));
  EXPECT_THAT(error, HasSubstr("waiting for a message"));
  EXPECT_THAT(error, Not(HasSubstr("silent")));
  EXPECT_GE(waited, 800);
  EXPECT_LT(waited, 3000);

  shut_down_echo(*channel, child);  // a deadline between messages leaves the channel usable
}

TEST(ShmChannel, SendTimesOutWhenPeerDoesNotReadAndChannelIsThenUnusable) {
  const std::string name = unique_prefix() + "r0";
  Pipe done;
  Child child([&] {  // attaches and heartbeats, but never reads
    auto channel = open_shm_channel(shm_options(name, "test parent"));
    HeartbeatThread heartbeat({channel.get()});
    channel->send(kReady, 0, {}, deadline_after(kChildWait));
    return done.wait(kChildWait) ? 0 : 1;
  });
  auto channel = create_shm_channel(shm_options(name, "retriever rank 1"));
  std::vector<std::byte> payload;
  ASSERT_EQ(channel->recv(payload, deadline_after(10s)).kind, kReady);
  const std::vector<std::byte> big = test::byte_pattern(1 << 20, 1);  // 16 rings' worth
  std::string error = error_of([&] { channel->send(to_wire(MessageKind::kBuild), 1, big, deadline_after(300ms)); });
  EXPECT_THAT(error, HasSubstr("retriever rank 1: timed out after"));
  EXPECT_THAT(error, HasSubstr("ring space"));
  error = error_of([&] { channel->send(to_wire(MessageKind::kStep), 2, {}, deadline_after(300ms)); });
  EXPECT_THAT(error, HasSubstr("unusable"));
  done.signal();
  EXPECT_EQ(child.wait(), 0);
}

// A killed peer is named within milliseconds through its pidfd (the child is still an unreaped zombie
// here, which kill(pid, 0) would miss), far below the 1 s liveness timeout. Both roles.
class ShmKilledPeer : public ::testing::TestWithParam<bool> {};

TEST_P(ShmKilledPeer, IsDetectedQuicklyAndNamed) {
  const bool child_creates = GetParam();
  const std::string prefix = unique_prefix();
  const std::string name = prefix + "r0";
  Child child([&] { return ready_then_wait(shm_options(name, "test parent"), child_creates); });
  ShmChannelOptions options = shm_options(name, "retriever rank 2");
  ASSERT_EQ(options.liveness_timeout, 1000ms);
  auto channel = make_end(options, !child_creates);
  std::vector<std::byte> payload;
  ASSERT_EQ(channel->recv(payload, deadline_after(10s)).kind, kReady);

  child.signal(SIGKILL);
  const auto start = SteadyClock::now();
  std::string error = error_of([&] { channel->recv(payload, deadline_after(10s)); });
  const long long waited = elapsed_ms(start);
  EXPECT_THAT(error, HasSubstr("retriever rank 2 (pid " + std::to_string(child.pid()) + ") exited"));
  EXPECT_LT(waited, 500);
  // A send that cannot fit the ring waits for a reader that is gone: also named.
  error = error_of(
      [&] { channel->send(to_wire(MessageKind::kBuild), 1, test::byte_pattern(1 << 20, 1), deadline_after(10s)); });
  EXPECT_THAT(error, HasSubstr("retriever rank 2 (pid"));
  EXPECT_THAT(error, HasSubstr("exited"));
  EXPECT_EQ(child.wait(), 128 + SIGKILL);
  EXPECT_THAT(list_shm_segments(prefix), ::testing::IsEmpty());
}

INSTANTIATE_TEST_SUITE_P(Roles, ShmKilledPeer, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "ChildCreates" : "ChildOpens"; });

TEST(ShmChannel, StoppedPeerIsDetectedByHeartbeatSilence) {
  const std::string name = unique_prefix() + "r0";
  Child child([&] { return ready_then_wait(shm_options(name, "test parent"), /*create=*/false); });
  ShmChannelOptions options = shm_options(name, "retriever rank 4");
  options.liveness_timeout = 300ms;
  auto channel = create_shm_channel(options);
  std::vector<std::byte> payload;
  ASSERT_EQ(channel->recv(payload, deadline_after(10s)).kind, kReady);

  child.signal(SIGSTOP);
  const auto start = SteadyClock::now();
  const std::string error = error_of([&] { channel->recv(payload, deadline_after(10s)); });
  const long long waited = elapsed_ms(start);
  EXPECT_THAT(error, HasSubstr("retriever rank 4 (pid " + std::to_string(child.pid()) + ") has been silent for"));
  EXPECT_THAT(error, HasSubstr("liveness timeout 300 ms"));
  EXPECT_GE(waited, 200);  // the last heartbeat may be up to 100 ms old when the child stops
  EXPECT_LT(waited, 2000);
  child.signal(SIGCONT);
  child.signal(SIGKILL);
  EXPECT_EQ(child.wait(), 128 + SIGKILL);
}

TEST(ShmChannel, ClosedPeerIsReportedAfterItsLastMessagesAreDelivered) {
  const std::string name = unique_prefix() + "r0";
  Pipe closed;
  Child child([&] {
    {
      auto channel = open_shm_channel(shm_options(name, "test parent"));
      for (uint64_t i = 0; i < 3; ++i) {
        channel->send(to_wire(MessageKind::kError), i, test::byte_pattern(5000, i), deadline_after(kChildWait));
      }
    }  // destroyed: the parent must still get all three, then "closed"
    closed.signal();
    std::this_thread::sleep_for(kChildWait);  // alive, so only the closed flag can tell
    return 0;
  });
  auto channel = create_shm_channel(shm_options(name, "retriever rank 6"));
  ASSERT_TRUE(closed.wait(20s));
  std::vector<std::byte> payload;
  for (uint64_t i = 0; i < 3; ++i) {
    const MessageHeader header = channel->recv(payload, deadline_after(10s));
    EXPECT_EQ(header.seq, i);
    EXPECT_EQ(count_mismatches(payload, i), 0u);
  }
  const auto start = SteadyClock::now();
  EXPECT_THAT(error_of([&] { channel->recv(payload, deadline_after(10s)); }),
              HasSubstr("retriever rank 6 closed the channel"));
  EXPECT_LT(elapsed_ms(start), 200);
  EXPECT_THAT(error_of([&] { channel->send(to_wire(MessageKind::kStep), 9, {}, deadline_after(10s)); }),
              HasSubstr("retriever rank 6 closed the channel"));
}

// A sender killed in the middle of a message larger than the ring: the reader gets a PeerError, and the
// channel then refuses use instead of returning a truncated message or reading garbage.
TEST(ShmChannel, MessageTruncatedByKilledSenderFailsTheChannel) {
  const std::string name = unique_prefix() + "r0";
  Child child([&] {
    const std::vector<std::byte> big = test::byte_pattern(20 << 20, 1);  // made first: slow under TSan
    auto channel = create_shm_channel(shm_options(name, "test parent"));
    HeartbeatThread heartbeat({channel.get()});
    channel->send(kReady, 0, {}, deadline_after(kChildWait));
    channel->send(to_wire(MessageKind::kBuild), 1, big, deadline_after(kChildWait));
    return 0;
  });
  auto channel = open_shm_channel(shm_options(name, "retriever rank 8"));
  std::vector<std::byte> payload;
  ASSERT_EQ(channel->recv(payload, deadline_after(10s)).kind, kReady);
  std::this_thread::sleep_for(200ms);  // the child fills the 64 KiB ring and blocks inside send
  child.signal(SIGKILL);
  EXPECT_THAT(error_of([&] { channel->recv(payload, deadline_after(10s)); }), HasSubstr("exited"));
  EXPECT_THAT(error_of([&] { channel->recv(payload, deadline_after(10s)); }),
              HasSubstr("unusable: an earlier error interrupted a message"));
  EXPECT_EQ(child.wait(), 128 + SIGKILL);
}

TEST(ShmChannel, NothingIsLeftInDevShm) {
  const std::string prefix = unique_prefix();

  {  // A creator nobody opened removes its segment when destroyed.
    auto lonely = create_shm_channel(shm_options(prefix + "lonely", "nobody"));
    EXPECT_THAT(list_shm_segments(prefix), ::testing::ElementsAre(prefix + "lonely"));
    // A second creator of a live segment is refused.
    EXPECT_THAT(error_of<Error>([&] { create_shm_channel(shm_options(prefix + "lonely", "nobody")); }),
                HasSubstr("already exists"));
  }
  EXPECT_THAT(list_shm_segments(prefix), ::testing::IsEmpty());

  {  // The name is gone as soon as open returns; closing both leaves nothing.
    Child child([&] { return echo_server(shm_options(prefix + "pair", "test parent"), /*create=*/true); });
    auto channel = open_shm_channel(shm_options(prefix + "pair", "test child"));
    EXPECT_THAT(list_shm_segments(prefix), ::testing::IsEmpty());
    shut_down_echo(*channel, child);
  }
  EXPECT_THAT(list_shm_segments(prefix), ::testing::IsEmpty());

  {  // Both ends SIGKILLed after attaching leave nothing.
    Pipe creator_saw_peer, opener_attached;
    Child creator([&] {
      auto channel = create_shm_channel(shm_options(prefix + "killed", "opener"));
      std::vector<std::byte> payload;
      channel->recv(payload, deadline_after(kChildWait));
      creator_saw_peer.signal();
      std::this_thread::sleep_for(kChildWait);
      return 0;
    });
    Child opener([&] {
      auto channel = open_shm_channel(shm_options(prefix + "killed", "creator"));
      channel->send(kReady, 0, {}, deadline_after(kChildWait));
      opener_attached.signal();
      std::this_thread::sleep_for(kChildWait);
      return 0;
    });
    ASSERT_TRUE(creator_saw_peer.wait(20s));
    ASSERT_TRUE(opener_attached.wait(20s));
    creator.signal(SIGKILL);
    opener.signal(SIGKILL);
    EXPECT_EQ(creator.wait(), 128 + SIGKILL);
    EXPECT_EQ(opener.wait(), 128 + SIGKILL);
  }
  EXPECT_THAT(list_shm_segments(prefix), ::testing::IsEmpty());

  {  // A creator killed before anyone opened leaves its segment: launcher cleanup and re-creation handle it.
    Pipe created;
    for (const char* suffix : {"stale-a", "stale-b"}) {
      Child creator([&] {
        auto channel = create_shm_channel(shm_options(prefix + suffix, "nobody"));
        created.signal();
        std::this_thread::sleep_for(kChildWait);
        return 0;
      });
      ASSERT_TRUE(created.wait(20s));
      creator.signal(SIGKILL);
      EXPECT_EQ(creator.wait(), 128 + SIGKILL);
    }
    EXPECT_THAT(list_shm_segments(prefix), ::testing::ElementsAre(prefix + "stale-a", prefix + "stale-b"));
    {  // The launcher's start-up sweep lists both (their creators are dead), never a live segment.
      auto live = create_shm_channel(shm_options(prefix + "stale-live", "nobody"));
      EXPECT_THAT(list_stale_shm_segments(prefix), ::testing::ElementsAre(prefix + "stale-a", prefix + "stale-b"));
    }
    remove_shm_segment(prefix + "stale-a");
    EXPECT_THAT(list_shm_segments(prefix), ::testing::ElementsAre(prefix + "stale-b"));
    {
      auto replaced = create_shm_channel(shm_options(prefix + "stale-b", "nobody"));  // its creator is dead
      EXPECT_THAT(list_shm_segments(prefix), ::testing::ElementsAre(prefix + "stale-b"));
    }
  }
  EXPECT_THAT(list_shm_segments(prefix), ::testing::IsEmpty());
}

// heartbeat() from a second thread while the owner thread sends and receives (also run under TSan).
TEST(ShmChannel, HeartbeatFromSecondThreadWhileOwnerSendsAndReceives) {
  const std::string name = unique_prefix() + "r0";
  Child child([&] { return echo_server(shm_options(name, "test parent"), /*create=*/true); });  // before any thread
  auto channel = open_shm_channel(shm_options(name, "test child"));

  std::atomic<bool> stop{false};
  std::atomic<uint64_t> beats{0};
  std::thread heartbeat([&] {
    while (!stop.load(std::memory_order_relaxed)) {
      channel->heartbeat();
      beats.fetch_add(1, std::memory_order_relaxed);
      std::this_thread::sleep_for(50us);
    }
  });
  std::vector<std::byte> payload;
  int mismatched = 0;
  for (int i = 0; i < 1000; ++i) {
    const std::size_t bytes = i % 50 == 0 ? 100'000 : static_cast<std::size_t>(i * 131 % 20'000);  // some > ring
    channel->send(to_wire(MessageKind::kStep), i, test::byte_pattern(bytes, i), deadline_after(10s));
    const MessageHeader header = channel->recv(payload, deadline_after(10s));
    ASSERT_EQ(header.seq, static_cast<uint64_t>(i));
    ASSERT_EQ(payload.size(), bytes);
    mismatched += count_mismatches(payload, i) != 0;
  }
  stop = true;
  heartbeat.join();
  EXPECT_EQ(mismatched, 0);
  EXPECT_GT(beats.load(), 0u);
  shut_down_echo(*channel, child);
}

// Round trip of a message and its echo between two processes, 64 B (the transport's own cost) and 16 KiB
// (a layer's query or partial result). Reports p50/p99. Measured on the 2-core development machine: about
// 1 us and 8 us when both processes have a core, about 250 us when other builds time-slice them onto
// one; so the bound only catches a pathological wait (e.g. millisecond sleeps).
TEST(ShmChannel, PingPongLatency) {
  const std::string name = unique_prefix() + "r0";
  Child child([&] { return echo_server(shm_options(name, "test parent", 0), /*create=*/false); });
  ShmChannelOptions options = shm_options(name, "test child");
  options.ring_bytes = 4 << 20;
  auto channel = create_shm_channel(options);
  std::vector<std::byte> pong;
  for (const std::size_t bytes : {std::size_t{64}, std::size_t{16} << 10}) {
    const std::vector<std::byte> ping = test::byte_pattern(bytes, bytes);
    std::vector<double> micros;
    for (int i = 0; i < 3000; ++i) {
      const auto start = SteadyClock::now();
      channel->send(to_wire(MessageKind::kBenchPing), i, ping, deadline_after(10s));
      channel->recv(pong, deadline_after(10s));
      if (i >= 500) micros.push_back(std::chrono::duration<double, std::micro>(SteadyClock::now() - start).count());
    }
    ASSERT_TRUE(pong == ping);
    std::sort(micros.begin(), micros.end());
    const double p50 = micros[micros.size() / 2];
    const double p99 = micros[micros.size() * 99 / 100];
    std::printf("shm %zu B ping-pong round trip: p50 %.1f us, p99 %.1f us over %zu trips\n", bytes, p50, p99,
                micros.size());
    RecordProperty(fmt::format("p50_us_{}B", bytes), std::to_string(p50));
    // TSan instruments every copied byte: milliseconds per trip on a busy machine
    if (!test::kThreadSanitizer) {
      EXPECT_LT(p50, 5000.0);
    }
  }
  shut_down_echo(*channel, child);
}

}  // namespace
}  // namespace ra::transport
