// The MPI Channel between two real ranks: run as `mpirun -np 2 mpi_channel_test`. Rank 0 plays the GPU
// worker and checks the results, rank 1 plays a retriever that echoes; both run every TEST in lockstep
// (a barrier after each). Covers ordering and content, a 32 MB message, the deadline, tag isolation.

#include <gtest/gtest.h>
#include <mpi.h>

#include <cstring>
#include <thread>

#include "common/splitmix64.h"
#include "transport/messages.h"
#include "transport/mpi/mpi_channel.h"
#include "tests/support/byte_pattern.h"
#include "tests/support/ping_pong.h"

namespace ra::transport {
namespace {

using namespace std::chrono_literals;
using Ms = std::chrono::milliseconds;

using test::kPing, test::kPong, test::kShutdown;

int rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

// Each test's two halves meet at a barrier in TearDown, which runs even after a failed ASSERT.
class MpiChannelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    int size = 0;
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    ASSERT_EQ(size, 2) << "run under mpirun -np 2";
    channel_ = make_mpi_channel(MPI_COMM_WORLD, 1 - rank(), {rank() == 0 ? "retriever rank 1" : "worker rank 0", 7});
  }
  void TearDown() override { MPI_Barrier(MPI_COMM_WORLD); }

  // Rank 1: echoes kPing as kPong until kShutdown.
  void echo_until_shutdown() {
    std::vector<std::byte> payload;
    for (;;) {
      const MessageHeader h = channel_->recv(payload, deadline_after(30s));
      if (h.kind == kShutdown) return;
      ASSERT_EQ(h.kind, kPing);
      ASSERT_EQ(h.bytes, payload.size());
      channel_->send(kPong, h.seq, payload, deadline_after(30s));
    }
  }

  std::unique_ptr<Channel> channel_;
};

TEST_F(MpiChannelTest, OrderedMessagesRoundTrip) {
  if (rank() == 1) return echo_until_shutdown();
  test::ordered_round_trips(*channel_, 1000, 8);
  if (HasFatalFailure()) return;
  channel_->send(kShutdown, 0, {}, deadline_after(5s));
}

TEST_F(MpiChannelTest, LargeMessageIsByteExact) {
  if (rank() == 1) return echo_until_shutdown();
  const std::vector<std::byte> big = test::byte_pattern((32u << 20) + 13, 42);
  std::vector<std::byte> reply;
  channel_->send(kPing, 1, big, deadline_after(30s));
  ASSERT_EQ(channel_->recv(reply, deadline_after(30s)).seq, 1u);
  ASSERT_TRUE(reply == big) << "32 MB payload differs";
  const std::byte* storage = reply.data();
  channel_->send(kPing, 2, big, deadline_after(30s));
  ASSERT_EQ(channel_->recv(reply, deadline_after(30s)).seq, 2u);
  ASSERT_TRUE(reply == big) << "second 32 MB payload differs";
  EXPECT_EQ(reply.data(), storage) << "the payload vector's capacity was not reused";
  channel_->send(kShutdown, 0, {}, deadline_after(5s));
}

// The deadline is MPI's only liveness protection: it must fire on time, and leave the channel usable.
TEST_F(MpiChannelTest, DeadlineFiresAndChannelStaysUsable) {
  if (rank() == 1) {
    std::this_thread::sleep_for(1s);
    channel_->send(kPong, 9, test::byte_pattern(5000, 9), deadline_after(5s));
    return;
  }
  std::vector<std::byte> payload;
  const auto start = SteadyClock::now();
  try {
    channel_->recv(payload, deadline_after(300ms));
    FAIL() << "no PeerError";
  } catch (const PeerError& e) {
    const auto took = std::chrono::duration_cast<Ms>(SteadyClock::now() - start).count();
    EXPECT_GE(took, 300);
    EXPECT_LT(took, 900);
    EXPECT_NE(std::string(e.what()).find("retriever rank 1"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("timed out"), std::string::npos) << e.what();
  }
  MessageHeader h;
  EXPECT_FALSE(channel_->try_recv(h, payload));
  h = channel_->recv(payload, deadline_after(10s));
  EXPECT_EQ(h.seq, 9u);
  EXPECT_EQ(payload, test::byte_pattern(5000, 9));
  channel_->heartbeat();  // a no-op, but callable
}

// Two channels between the same ranks, told apart by tag.
TEST_F(MpiChannelTest, TagsSeparateChannels) {
  auto other = make_mpi_channel(MPI_COMM_WORLD, 1 - rank(), {"other", 8});
  std::vector<std::byte> payload;
  if (rank() == 1) {
    other->send(kPing, 8, test::byte_pattern(10, 8), deadline_after(5s));
    channel_->send(kPing, 7, test::byte_pattern(10, 7), deadline_after(5s));
    return;
  }
  EXPECT_EQ(channel_->recv(payload, deadline_after(5s)).seq, 7u);
  EXPECT_EQ(payload, test::byte_pattern(10, 7));
  EXPECT_EQ(other->recv(payload, deadline_after(5s)).seq, 8u);
  EXPECT_EQ(payload, test::byte_pattern(10, 8));
}

TEST_F(MpiChannelTest, RejectsBadArguments) {
  EXPECT_THROW(make_mpi_channel(MPI_COMM_WORLD, 2, {"nobody", 0}), Error);
  EXPECT_THROW(make_mpi_channel(MPI_COMM_WORLD, 0, {"bad tag", -1}), Error);
}

}  // namespace
}  // namespace ra::transport

int main(int argc, char** argv) {
  int provided = 0;
  // The channel needs at least MPI_THREAD_SERIALIZED; ask for exactly that to prove it suffices.
  MPI_Init_thread(&argc, &argv, MPI_THREAD_SERIALIZED, &provided);
  ::testing::InitGoogleTest(&argc, argv);
  if (ra::transport::rank() != 0) {  // one report: rank 0's (failures on rank 1 still fail the run)
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  const int failed = RUN_ALL_TESTS();
  if (failed) std::fprintf(stderr, "rank %d: %d test(s) failed\n", ra::transport::rank(), failed);
  MPI_Finalize();
  return failed ? 1 : 0;
}
