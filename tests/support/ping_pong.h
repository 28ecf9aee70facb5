#pragma once
// The echo protocol of the channel tests: the peer answers each kPing with a kPong of the same payload
// until kShutdown (the benchmark's message kinds, so a test message is never a pipeline one), and the
// ordering check every Channel implementation passes.

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <vector>

#include "tests/support/byte_pattern.h"
#include "transport/channel.h"
#include "transport/messages.h"

namespace ra::test {

inline constexpr uint32_t kPing = transport::to_wire(transport::MessageKind::kBenchPing);
inline constexpr uint32_t kPong = transport::to_wire(transport::MessageKind::kBenchPong);
inline constexpr uint32_t kShutdown = transport::to_wire(transport::MessageKind::kShutdown);

// `messages` pings of 0..299 bytes in bursts of `burst` in flight; the pongs must come back in order,
// byte for byte. Fails the current test (gtest ASSERT) at the first wrong reply.
inline void ordered_round_trips(transport::Channel& channel, uint64_t messages, uint64_t burst) {
  using namespace std::chrono_literals;
  std::vector<std::byte> reply;
  for (uint64_t first = 0; first < messages; first += burst) {
    for (uint64_t seq = first; seq < first + burst; ++seq) {
      channel.send(kPing, seq, byte_pattern(seq % 300, seq), transport::deadline_after(5s));
    }
    for (uint64_t seq = first; seq < first + burst; ++seq) {
      const transport::MessageHeader h = channel.recv(reply, transport::deadline_after(5s));
      ASSERT_EQ(h.kind, kPong);
      ASSERT_EQ(h.seq, seq);
      ASSERT_EQ(h.bytes, seq % 300);
      ASSERT_EQ(reply, byte_pattern(seq % 300, seq)) << "seq " << seq;
    }
  }
}

}  // namespace ra::test
