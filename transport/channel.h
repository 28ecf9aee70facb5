#pragma once
// The transport interface (DESIGN §2): one bidirectional, message-oriented link between the GPU worker
// and one CPU retriever. Implementations: shared memory (shm_channel.h), UCX (ucx_channel.h), MPI
// point-to-point (mpi_channel.h, for benchmarks) and in-process (inproc_channel.h, for unit tests).
//
// A message is a MessageHeader plus `header.bytes` payload bytes; payload layouts live in messages.h.
// Messages on one channel arrive whole and in order. Every wait takes a deadline, and every wait also
// watches the peer's liveness: a peer that is dead, or that has not sent a heartbeat or a message for
// longer than the channel's liveness timeout, turns the wait into a PeerError that names the peer.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"

namespace ra::transport {

using SteadyClock = std::chrono::steady_clock;
using Deadline = SteadyClock::time_point;

inline Deadline deadline_after(std::chrono::milliseconds timeout) { return SteadyClock::now() + timeout; }
inline constexpr Deadline kNoDeadline = Deadline::max();

// How often each side proves it is alive, and how long a silent peer is tolerated. The pipeline must
// name a dead or stopped retriever within 2 s (issue #4), so the default timeout is 1 s.
inline constexpr std::chrono::milliseconds kHeartbeatPeriod{100};
inline constexpr std::chrono::milliseconds kDefaultLivenessTimeout{1000};

// The peer died, stopped answering, reported an error, or a deadline passed. what() names the peer.
class PeerError : public Error {
 public:
  using Error::Error;
};
// The deadline of a wait passed while the peer was still alive (a subtype, so callers that only care
// that the exchange failed catch PeerError; implementations throw this one for deadlines).
class TimeoutError : public PeerError {
 public:
  using PeerError::PeerError;
};

// On the wire before every payload: 24 bytes, host byte order (all ranks of a job share one ABI; the
// handshake checks it).
struct MessageHeader {
  uint32_t kind = 0;      // MessageKind (messages.h)
  uint32_t reserved = 0;  // 0
  uint64_t seq = 0;       // request sequence number; a reply echoes its request's
  uint64_t bytes = 0;     // payload bytes that follow
};
static_assert(sizeof(MessageHeader) == 24);

class Channel {
 public:
  virtual ~Channel() = default;

  // Who is at the other end, for error messages: e.g. "retriever rank 2 on host node1".
  virtual const std::string& peer_name() const = 0;

  // Sends {kind, seq, payload.size()} + payload. Returns once `payload` may be reused. Messages of any
  // size are accepted (implementations fragment what does not fit their buffers). Throws PeerError if
  // the peer is dead or silent, or if `deadline` passes while the channel is full.
  virtual void send(uint32_t kind, uint64_t seq, std::span<const std::byte> payload, Deadline deadline) = 0;

  // Waits for the next message and returns its header; the payload replaces the contents of `payload`
  // (its capacity is reused, so a steady stream of equal-sized messages allocates nothing). Throws
  // PeerError if `deadline` passes or the peer is dead or silent longer than the liveness timeout.
  virtual MessageHeader recv(std::vector<std::byte>& payload, Deadline deadline) = 0;

  // Non-blocking recv: returns false at once when no complete message is waiting (also checks liveness).
  virtual bool try_recv(MessageHeader& header, std::vector<std::byte>& payload) = 0;

  // Proof of life for the peer's liveness check. Thread-safe: a heartbeat thread calls it every
  // kHeartbeatPeriod while the owning thread may be inside send/recv, or busy elsewhere for seconds.
  virtual void heartbeat() = 0;
};

}  // namespace ra::transport
