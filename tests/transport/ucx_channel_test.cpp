// The UCX Channel between two real processes: each test forks a child, each process makes its own UCX
// worker after the fork (the parent is single-threaded at that point), and the two swap worker addresses
// over pipes. Covers ordering, 32 MB messages, a transfer longer than the liveness timeout, deadlines,
// a killed peer (endpoint error), a stopped peer (heartbeat silence), pending sends to both, a peer that
// closes its end, a truncated message, heartbeats from other threads, and channels sharing one worker.

#include <gtest/gtest.h>
#include <signal.h>
#include <ucp/api/ucp.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <functional>
#include <thread>

#include "common/splitmix64.h"
#include "transport/messages.h"
#include "transport/ucx/ucx_channel.h"
#include "tests/support/byte_pattern.h"
#include "tests/support/child_exit.h"
#include "tests/support/error_message.h"
#include "tests/support/ping_pong.h"
#include "tests/support/pipe_blob.h"
#include "tests/support/sanitizer.h"

namespace ra::transport {
namespace {

using namespace std::chrono_literals;
using Ms = std::chrono::milliseconds;

using test::kPing, test::kPong, test::kShutdown;
using test::read_all, test::recv_blob, test::send_blob, test::write_all;
const std::string kChildName = "retriever 7 (test child)";
const std::string kParentName = "gpu worker (test parent)";

// ---- process plumbing ------------------------------------------------------------------------------

// What a child runs: its own worker, and the parent's worker address.
using ChildBody = std::function<void(UcxWorker& worker, std::span<const std::byte> parent_address)>;

// A forked child process. The child makes its UcxWorker after the fork, swaps addresses with the parent
// (connect_worker), runs the body and exits 0, or prints why and exits 1 when the body throws.
class Child {
 public:
  explicit Child(ChildBody body) {
    int down[2], up[2];  // parent -> child, child -> parent
    RA_REQUIRE(::pipe(down) == 0 && ::pipe(up) == 0, "pipe: {}", std::strerror(errno));
    pid_ = ::fork();
    RA_REQUIRE(pid_ >= 0, "fork: {}", std::strerror(errno));
    if (pid_ == 0) {
      ::close(down[1]);
      ::close(up[0]);
      int code = 0;
      try {
        UcxWorker worker;
        send_blob(up[1], worker.local_address());
        const std::vector<std::byte> parent_address = recv_blob(down[0]);
        body(worker, parent_address);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "child: %s\n", e.what());
        code = 1;
      }
      std::fflush(stderr);
      ::_exit(code);  // never return into the test runner
    }
    ::close(down[0]);
    ::close(up[1]);
    to_child_ = down[1];
    from_child_ = up[0];
  }

  ~Child() {
    if (pid_ > 0 && !reaped_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    ::close(to_child_);
    ::close(from_child_);
  }

  // Swaps worker addresses with the child; returns the child's.
  std::vector<std::byte> connect_worker(const UcxWorker& parent) {
    std::vector<std::byte> child_address = recv_blob(from_child_);
    send_blob(to_child_, parent.local_address());
    return child_address;
  }

  void signal(int sig) { ASSERT_EQ(::kill(pid_, sig), 0); }

  // The child's exit code, or 128 + signal; -1 if it is still running after `timeout` (then killed).
  int wait(Ms timeout = 20s) {
    reaped_ = true;
    return test::wait_for_exit(pid_, timeout, 5ms);
  }

 private:
  pid_t pid_ = -1;
  bool reaped_ = false;
  int to_child_ = -1;
  int from_child_ = -1;
};

// Calls channel.heartbeat() every `period` on its own thread until destroyed.
class HeartbeatThread {
 public:
  explicit HeartbeatThread(Channel& channel, Ms period = kHeartbeatPeriod)
      : thread_([&channel, period](std::stop_token stop) {
          while (!stop.stop_requested()) {
            channel.heartbeat();
            std::this_thread::sleep_for(period);
          }
        }) {}

 private:
  std::jthread thread_;
};

// A check inside the child: throws, so the child exits 1 with the message.
void expect(bool ok, std::string_view what) {
  if (!ok) throw Error(fmt::format("check failed: {}", what));
}

// Child body: echoes every kPing back as kPong (same seq and payload) until kShutdown, which it answers.
void echo_until_shutdown(UcxWorker& worker, std::span<const std::byte> parent,
                         Ms liveness = kDefaultLivenessTimeout) {
  auto channel = worker.connect(parent, {kParentName, liveness, 1});
  HeartbeatThread heartbeat(*channel);
  std::vector<std::byte> payload;
  for (;;) {
    const MessageHeader h = channel->recv(payload, deadline_after(30s));
    if (h.kind == kShutdown) {
      channel->send(kShutdown, h.seq, {}, deadline_after(5s));
      return;
    }
    expect(h.kind == kPing, "kind is kPing");
    expect(h.bytes == payload.size(), "header.bytes matches the payload");
    channel->send(kPong, h.seq, payload, deadline_after(30s));
  }
}

void shut_down(Channel& channel, Child& child) {
  channel.send(kShutdown, 999, {}, deadline_after(5s));
  std::vector<std::byte> payload;
  EXPECT_EQ(channel.recv(payload, deadline_after(5s)).kind, kShutdown);
  EXPECT_EQ(child.wait(), 0);
}

// Runs `call`, which must throw PeerError; returns its message and the time it took.
template <typename F>
std::pair<std::string, Ms> expect_peer_error(F call) {
  const auto start = SteadyClock::now();
  const std::string what = test::error_of<PeerError>(call);
  return {what, std::chrono::duration_cast<Ms>(SteadyClock::now() - start)};
}

// ---- tests -------------------------------------------------------------------------------------------

TEST(UcxChannel, OrderedSmallMessagesRoundTrip) {
  Child child([](UcxWorker& w, auto parent) { echo_until_shutdown(w, parent); });
  UcxWorker worker;
  auto channel = worker.connect(child.connect_worker(worker), {kChildName, kDefaultLivenessTimeout, 1});
  HeartbeatThread heartbeat(*channel);
  std::fprintf(stderr, "UCX lanes:\n%s", ucx_channel_transports(*channel).c_str());

  // Bursts of 16 in flight, sizes 0..299 bytes: replies must come back in order, byte for byte.
  constexpr uint64_t kMessages = 2000;
  test::ordered_round_trips(*channel, kMessages, 16);
  if (HasFatalFailure()) return;
  const UcxChannelStats stats = ucx_channel_stats(*channel);
  EXPECT_EQ(stats.messages_sent, kMessages);
  EXPECT_EQ(stats.messages_received, kMessages);
  shut_down(*channel, child);
}

TEST(UcxChannel, LargeMessagesAreByteExactAndReuseCapacity) {
  Child child([](UcxWorker& w, auto parent) { echo_until_shutdown(w, parent); });
  UcxWorker worker;
  auto channel = worker.connect(child.connect_worker(worker), {kChildName, kDefaultLivenessTimeout, 1});
  HeartbeatThread heartbeat(*channel);

  const size_t kBig = (32u << 20) + 13;  // 32 MB and an odd tail: rendezvous, not a multiple of anything
  const std::vector<std::byte> big = test::byte_pattern(kBig, 42), small = test::byte_pattern(100, 7);
  std::vector<std::byte> reply;
  // big, small, big: an eager message between two rendezvous ones keeps its place.
  channel->send(kPing, 1, big, deadline_after(30s));
  MessageHeader h = channel->recv(reply, deadline_after(30s));
  ASSERT_EQ(h.seq, 1u);
  ASSERT_EQ(reply.size(), kBig);
  ASSERT_TRUE(reply == big) << "32 MB payload differs";
  const std::byte* storage = reply.data();

  channel->send(kPing, 2, small, deadline_after(5s));
  channel->send(kPing, 3, big, deadline_after(30s));
  h = channel->recv(reply, deadline_after(5s));
  ASSERT_EQ(h.seq, 2u);
  ASSERT_EQ(reply, small);
  h = channel->recv(reply, deadline_after(30s));
  ASSERT_EQ(h.seq, 3u);
  ASSERT_TRUE(reply == big) << "second 32 MB payload differs";
  EXPECT_EQ(reply.data(), storage) << "the payload vector's capacity was not reused";
  shut_down(*channel, child);
}

// A transfer that outlasts the liveness timeout is not silence: fragments keep landing and heartbeats
// slip in between them. (On this 2-core box loopback TCP moves ~100-300 MB/s, so 96 MB takes longer
// than the 300 ms timeout.)
TEST(UcxChannel, LongTransferIsNotSilence) {
  constexpr Ms kLiveness = 300ms, kPeriod = 20ms;
  Child child([&](UcxWorker& w, std::span<const std::byte> parent) {
    auto channel = w.connect(parent, {kParentName, kLiveness, 1});
    HeartbeatThread heartbeat(*channel, kPeriod);
    std::vector<std::byte> payload;
    for (;;) {
      const MessageHeader h = channel->recv(payload, deadline_after(30s));
      if (h.kind == kShutdown) return;
      channel->send(kPong, h.seq, payload, deadline_after(30s));
    }
  });
  UcxWorker worker;
  auto channel = worker.connect(child.connect_worker(worker), {kChildName, kLiveness, 1});
  HeartbeatThread heartbeat(*channel, kPeriod);
  const std::vector<std::byte> big = test::byte_pattern(96u << 20, 96);
  std::vector<std::byte> reply;
  const auto start = SteadyClock::now();
  channel->send(kPing, 1, big, deadline_after(30s));
  ASSERT_EQ(channel->recv(reply, deadline_after(30s)).seq, 1u);
  std::fprintf(stderr, "96 MB there and back in %lld ms\n",
               static_cast<long long>(std::chrono::duration_cast<Ms>(SteadyClock::now() - start).count()));
  ASSERT_TRUE(reply == big);
  channel->send(kShutdown, 2, {}, deadline_after(5s));
  EXPECT_EQ(child.wait(), 0);
}

// Silence in data is fine while heartbeats flow (alive but slow); a deadline still fires on time and
// leaves the channel usable.
TEST(UcxChannel, DeadlineFiresAndSlowPeerIsNotDead) {
  Child child([](UcxWorker& w, std::span<const std::byte> parent) {
    auto channel = w.connect(parent, {kParentName, kDefaultLivenessTimeout, 1});
    HeartbeatThread heartbeat(*channel);
    std::vector<std::byte> payload;
    const MessageHeader h = channel->recv(payload, deadline_after(10s));
    std::this_thread::sleep_for(2500ms);  // 2.5x the liveness timeout, heartbeating
    channel->send(kPong, h.seq, payload, deadline_after(5s));
    channel->recv(payload, deadline_after(10s));  // wait for the parent to finish before closing
  });
  UcxWorker worker;
  auto channel = worker.connect(child.connect_worker(worker), {kChildName, kDefaultLivenessTimeout, 1});
  HeartbeatThread heartbeat(*channel);

  std::vector<std::byte> payload;
  auto [what, took] = expect_peer_error([&] { channel->recv(payload, deadline_after(300ms)); });
  EXPECT_NE(what.find("timed out"), std::string::npos) << what;
  EXPECT_NE(what.find(kChildName), std::string::npos) << what;
  EXPECT_GE(took.count(), 300);
  EXPECT_LT(took.count(), 1000);

  channel->send(kPing, 5, test::byte_pattern(64, 5), deadline_after(5s));
  const auto start = SteadyClock::now();
  const MessageHeader h = channel->recv(payload, deadline_after(10s));
  EXPECT_GE(SteadyClock::now() - start, 2400ms);
  EXPECT_EQ(h.kind, kPong);
  EXPECT_EQ(h.seq, 5u);
  EXPECT_EQ(payload, test::byte_pattern(64, 5));
  channel->send(kShutdown, 6, {}, deadline_after(5s));
  EXPECT_EQ(child.wait(), 0);
}

// SIGKILL: the endpoint error names the peer long before the (here 10 s) liveness timeout could.
TEST(UcxChannel, KilledPeerIsReportedQuickly) {
  Child child([](UcxWorker& w, auto parent) { echo_until_shutdown(w, parent, 10s); });
  UcxWorker worker;
  auto channel = worker.connect(child.connect_worker(worker), {kChildName, 10s, 1});
  HeartbeatThread heartbeat(*channel);
  std::vector<std::byte> payload;
  channel->send(kPing, 1, test::byte_pattern(16, 1), deadline_after(5s));
  ASSERT_EQ(channel->recv(payload, deadline_after(5s)).kind, kPong);

  child.signal(SIGKILL);
  auto [what, took] = expect_peer_error([&] { channel->recv(payload, kNoDeadline); });
  EXPECT_NE(what.find(kChildName), std::string::npos) << what;
  EXPECT_NE(what.find("died"), std::string::npos) << what;
  EXPECT_LT(took.count(), 1000) << what;
  EXPECT_EQ(child.wait(), 128 + SIGKILL);
  // The channel stays failed.
  EXPECT_THROW(channel->send(kPing, 2, payload, deadline_after(1s)), PeerError);
}

// A 64 MiB rendezvous send to a child that never receives, which gets `sig` 500 ms into it; the send's
// PeerError and how long it took go to check(), with the channel (this side's liveness: `liveness`).
void send_to_signalled_child(int sig, Ms liveness,
                             const std::function<void(Channel&, const std::string& what, Ms took)>& check) {
  Child child([](UcxWorker& w, std::span<const std::byte> parent) {
    auto channel = w.connect(parent, {kParentName, 10s, 1});
    HeartbeatThread heartbeat(*channel);
    std::this_thread::sleep_for(60s);  // never receives
  });
  UcxWorker worker;
  auto channel = worker.connect(child.connect_worker(worker), {kChildName, liveness, 1});
  HeartbeatThread heartbeat(*channel);
  const std::vector<std::byte> big = test::byte_pattern(64u << 20, 3);
  std::jthread signaller([&] {
    std::this_thread::sleep_for(500ms);
    child.signal(sig);
  });
  auto [what, took] = expect_peer_error([&] { channel->send(kPing, 1, big, kNoDeadline); });
  check(*channel, what, took);
}

// A rendezvous send waits for the peer to take the data; killing the peer must end that wait too.
TEST(UcxChannel, KilledPeerFailsPendingLargeSend) {
  send_to_signalled_child(SIGKILL, 10s, [](Channel&, const std::string& what, Ms took) {
    EXPECT_NE(what.find(kChildName), std::string::npos) << what;
    EXPECT_LT(took.count(), 1500) << what;  // 500 ms until the kill, then the endpoint error
  });
}

// A stopped peer never takes a rendezvous send: the silence check must end the send and release it.
TEST(UcxChannel, StoppedPeerFailsPendingLargeSend) {
  send_to_signalled_child(SIGSTOP, kDefaultLivenessTimeout, [](Channel& channel, const std::string& what, Ms took) {
    EXPECT_NE(what.find(kChildName), std::string::npos) << what;
    EXPECT_NE(what.find("silent"), std::string::npos) << what;
    EXPECT_LT(took.count(), 2500) << what;
    EXPECT_THROW(channel.send(kPing, 2, {}, deadline_after(1s)), PeerError);  // broken from now on
  });
}

// SIGSTOP: the process is alive but silent; its heartbeats stop, and the liveness timeout names it.
TEST(UcxChannel, StoppedPeerIsReportedByHeartbeatSilence) {
  Child child([](UcxWorker& w, auto parent) { echo_until_shutdown(w, parent); });
  UcxWorker worker;
  auto channel = worker.connect(child.connect_worker(worker), {kChildName, kDefaultLivenessTimeout, 1});
  HeartbeatThread heartbeat(*channel);
  std::vector<std::byte> payload;
  channel->send(kPing, 1, test::byte_pattern(16, 1), deadline_after(5s));
  ASSERT_EQ(channel->recv(payload, deadline_after(5s)).kind, kPong);
  // The child is alive and heartbeating: a 1.5 s wait for nothing ends by the deadline, not silence.
  auto [idle_what, idle_took] = expect_peer_error([&] { channel->recv(payload, deadline_after(1500ms)); });
  EXPECT_NE(idle_what.find("timed out"), std::string::npos) << idle_what;

  child.signal(SIGSTOP);
  auto [what, took] = expect_peer_error([&] { channel->recv(payload, kNoDeadline); });
  EXPECT_NE(what.find(kChildName), std::string::npos) << what;
  EXPECT_NE(what.find("silent"), std::string::npos) << what;
  EXPECT_GE(took.count(), 800) << what;  // at most one heartbeat period of the timeout had passed
  EXPECT_LT(took.count(), 2000) << what;
  child.signal(SIGKILL);
  EXPECT_EQ(child.wait(), 128 + SIGKILL);
}

// A peer that sends its last message and closes its end: the message arrives, then the peer is dead.
// (The parent keeps polling meanwhile: a closing end flushes, and UCX's wire-up needs both sides to make
// progress.)
TEST(UcxChannel, ClosedPeerDeliversThenFails) {
  Child child([](UcxWorker& w, std::span<const std::byte> parent) {
    auto channel = w.connect(parent, {kParentName, 10s, 1});
    channel->send(kShutdown, 77, test::byte_pattern(1000, 77), deadline_after(5s));
  });  // channel and worker destroyed, process exits
  UcxWorker worker;
  auto channel = worker.connect(child.connect_worker(worker), {kChildName, 10s, 1});
  std::vector<std::byte> payload;
  const MessageHeader h = channel->recv(payload, deadline_after(5s));
  EXPECT_EQ(h.kind, kShutdown);
  EXPECT_EQ(h.seq, 77u);
  EXPECT_EQ(payload, test::byte_pattern(1000, 77));
  auto [what, took] = expect_peer_error([&] { channel->recv(payload, kNoDeadline); });
  EXPECT_NE(what.find("closed its end"), std::string::npos) << what;
  EXPECT_LT(took.count(), 1000) << what;
  EXPECT_EQ(child.wait(), 0);
}

// Sends `bytes` as one raw tagged message on channel 1's message stream (tag 1 << 32 | 1, see
// ucx_channel.h) from a bare UCX worker, bypassing UcxChannel's framing.
void send_raw(std::span<const std::byte> parent, std::span<const std::byte> bytes) {
  ucp_config_t* config = nullptr;
  expect(ucp_config_read(nullptr, nullptr, &config) == UCS_OK, "ucp_config_read");
  ucp_params_t params{};
  params.field_mask = UCP_PARAM_FIELD_FEATURES;
  params.features = UCP_FEATURE_TAG;
  ucp_context_h context = nullptr;
  expect(ucp_init(&params, config, &context) == UCS_OK, "ucp_init");
  ucp_config_release(config);
  ucp_worker_params_t worker_params{};
  ucp_worker_h worker = nullptr;
  expect(ucp_worker_create(context, &worker_params, &worker) == UCS_OK, "ucp_worker_create");
  ucp_ep_params_t ep_params{};
  ep_params.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS;
  ep_params.address = reinterpret_cast<const ucp_address_t*>(parent.data());
  ucp_ep_h ep = nullptr;
  expect(ucp_ep_create(worker, &ep_params, &ep) == UCS_OK, "ucp_ep_create");
  ucp_request_param_t param{};
  auto finish = [&](ucs_status_ptr_t request) {  // bounded: the parent may stop progressing
    const auto give_up = SteadyClock::now() + 5s;
    if (!UCS_PTR_IS_PTR(request)) return;
    while (ucp_request_check_status(request) == UCS_INPROGRESS && SteadyClock::now() < give_up) {
      ucp_worker_progress(worker);
    }
    ucp_request_cancel(worker, request);
    ucp_request_free(request);
  };
  finish(ucp_tag_send_nbx(ep, bytes.data(), bytes.size(), (uint64_t{1} << 32) | 1, &param));
  finish(ucp_ep_flush_nbx(ep, &param));
  param.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
  param.flags = UCP_EP_CLOSE_FLAG_FORCE;
  finish(ucp_ep_close_nbx(ep, &param));
  ucp_worker_destroy(worker);
  ucp_cleanup(context);
}

// A message whose header promises more payload than it carries: PeerError, and the channel is broken
// and closed; the child hears the goodbye long before its 10 s liveness timeout.
TEST(UcxChannel, TruncatedMessageBreaksTheChannel) {
  Child child([](UcxWorker& w, std::span<const std::byte> parent) {
    auto channel = w.connect(parent, {kParentName, 10s, 1});
    const MessageHeader header{kPing, 0, 5, 100};  // promises 100 bytes, carries 50
    std::vector<std::byte> bytes(sizeof header + 50);
    std::memcpy(bytes.data(), &header, sizeof header);
    send_raw(parent, bytes);
    std::vector<std::byte> payload;
    try {
      channel->recv(payload, deadline_after(5s));
    } catch (const PeerError& e) {
      expect(std::string_view(e.what()).find("closed its end") != std::string_view::npos, e.what());
      return;
    }
    expect(false, "the parent closed its end");
  });
  UcxWorker worker;
  auto channel = worker.connect(child.connect_worker(worker), {kChildName, 10s, 1});
  HeartbeatThread heartbeat(*channel);
  std::vector<std::byte> payload;
  auto [what, took] = expect_peer_error([&] { channel->recv(payload, deadline_after(10s)); });
  EXPECT_NE(what.find("malformed"), std::string::npos) << what;
  EXPECT_NE(what.find("header says 24 + 100"), std::string::npos) << what;
  auto [again, took_again] = expect_peer_error([&] { channel->recv(payload, deadline_after(1s)); });
  EXPECT_NE(again.find("broken"), std::string::npos) << again;
  EXPECT_EQ(child.wait(), 0);
}

// Both sides heartbeat every millisecond from a second thread while the owners exchange small and
// rendezvous-sized messages. Every heartbeat is drained: the parent has received at least as many as the
// child reports having sent before its last message.
TEST(UcxChannel, HeartbeatsFromAnotherThreadDuringTraffic) {
  constexpr uint64_t kRounds = 400;
  // What is checked is that heartbeats are drained during traffic, not the liveness deadline: under TSan's
  // slowdown on a loaded machine a heartbeat thread can be starved past 1 s (docs/reliability.md).
  const Ms liveness = test::kThreadSanitizer ? 3 * kDefaultLivenessTimeout : kDefaultLivenessTimeout;
  auto size_of = [](uint64_t i) -> size_t { return i % 10 == 0 ? (1u << 20) + i : i * 37 % 2000; };
  Child child([&](UcxWorker& w, std::span<const std::byte> parent) {
    auto channel = w.connect(parent, {kParentName, liveness, 1});
    uint64_t sent = 0;
    {
      HeartbeatThread heartbeat(*channel, 1ms);
      std::vector<std::byte> payload;
      for (uint64_t i = 0; i < kRounds; ++i) {
        const MessageHeader h = channel->recv(payload, deadline_after(10s));
        expect(h.seq == i && payload == test::byte_pattern(size_of(i), i), "ping in order and intact");
        channel->send(kPong, i, payload, deadline_after(10s));
      }
      std::this_thread::sleep_for(200ms);  // heartbeats only, while the parent polls
    }
    sent = ucx_channel_stats(*channel).heartbeats_sent;
    channel->send(kShutdown, sent, {}, deadline_after(5s));
    std::vector<std::byte> payload;
    channel->recv(payload, deadline_after(10s));  // the parent's goodbye
  });
  UcxWorker worker;
  auto channel = worker.connect(child.connect_worker(worker), {kChildName, liveness, 1});
  MessageHeader last;
  {
    HeartbeatThread heartbeat(*channel, 1ms);
    std::vector<std::byte> reply;
    for (uint64_t i = 0; i < kRounds; ++i) {
      channel->send(kPing, i, test::byte_pattern(size_of(i), i), deadline_after(10s));
      const MessageHeader h = channel->recv(reply, deadline_after(10s));
      ASSERT_EQ(h.seq, i);
      ASSERT_EQ(reply, test::byte_pattern(size_of(i), i));
    }
    last = channel->recv(reply, deadline_after(10s));
  }
  ASSERT_EQ(last.kind, kShutdown);
  const UcxChannelStats stats = ucx_channel_stats(*channel);
  EXPECT_GT(last.seq, 100u) << "the child's heartbeat thread hardly ran";
  EXPECT_GE(stats.heartbeats_received, last.seq);
  EXPECT_GT(stats.heartbeats_sent, 100u);
  channel->send(kShutdown, 0, {}, deadline_after(5s));
  EXPECT_EQ(child.wait(), 0);
}

// Two channels between the same two workers: a recv on one never takes the other's messages.
TEST(UcxChannel, ChannelsSharingAWorkerAreIsolated) {
  Child child([](UcxWorker& w, std::span<const std::byte> parent) {
    auto one = w.connect(parent, {kParentName + " #1", 10s, 1});
    auto two = w.connect(parent, {kParentName + " #2", 10s, 2});
    two->send(kPing, 2, test::byte_pattern(10, 2), deadline_after(5s));
    two->send(kPing, 22, test::byte_pattern(20000, 22), deadline_after(5s));
    one->send(kPing, 1, test::byte_pattern(10, 1), deadline_after(5s));
    std::vector<std::byte> payload;
    one->recv(payload, deadline_after(10s));  // the parent's goodbye
  });
  UcxWorker worker;
  const std::vector<std::byte> address = child.connect_worker(worker);
  auto one = worker.connect(address, {kChildName + " #1", 10s, 1});
  auto two = worker.connect(address, {kChildName + " #2", 10s, 2});
  HeartbeatThread heartbeat_one(*one), heartbeat_two(*two);
  EXPECT_THROW(worker.connect(address, {"duplicate", kDefaultLivenessTimeout, 2}), Error);

  std::vector<std::byte> payload;
  MessageHeader h = one->recv(payload, deadline_after(5s));
  EXPECT_EQ(h.seq, 1u);
  EXPECT_EQ(payload, test::byte_pattern(10, 1));
  h = two->recv(payload, deadline_after(5s));
  EXPECT_EQ(h.seq, 2u);
  h = two->recv(payload, deadline_after(5s));
  EXPECT_EQ(h.seq, 22u);
  EXPECT_EQ(payload, test::byte_pattern(20000, 22));
  MessageHeader none;
  EXPECT_FALSE(one->try_recv(none, payload));
  one->send(kShutdown, 0, {}, deadline_after(5s));
  EXPECT_EQ(child.wait(), 0);
}

}  // namespace
}  // namespace ra::transport
