#pragma once
// The shared-memory Channel (DESIGN §2): a worker and a retriever on the same node, joined by one named
// POSIX shared-memory segment (Boost.Interprocess shared_memory_object + mapped_region) that holds two
// lock-free byte rings. The retriever creates the segment; the worker opens it.
//
// Segment layout (host byte order; both ends share one ABI, checked by magic, version and sizes):
//   offset 0     SegmentHeader   magic "RASHMSG1", version, control bytes, ring_bytes, state
//                                (creating → ready once the creator has initialised it → attached once
//                                the opener has claimed it; a second opener is refused)
//   128 B lines  SideState[2]    per side: heartbeat counter, pid, closed flag. [0] creator, [1] opener
//   128 B lines  RingControl[2]  ring i is written by side i: head and tail, each on its own lines
//   128 B lines  Bell[2][2]      per ring: the futex its reader blocks on for data, and its writer for space
//   then         ring data       [2][ring_bytes] bytes, ring_bytes a power of two (shm_ring.h)
//
// Ring protocol: a message is its 24-byte MessageHeader then its payload, streamed through the ring of
// the sending side. The header is written whole (send waits for 24 free bytes), so a reader that sees
// 24 bytes has a header. Payload bytes follow in chunks of at most ring_bytes / 4, each published with
// a release store of head, while the reader copies out and releases with a release store of tail: a
// message of any size passes through a ring of any size as long as the reader keeps reading, and each
// side's hot path is memcpy plus one atomic store, with no allocation or system call.
//
// Waits spin with a pause instruction for 50 µs (RA_SHM_SPIN_US overrides it, RA_SHM_SPIN_US_RETRIEVER and
// RA_SHM_SPIN_US_WORKER per side; the clock read every 64 turns), then block on a futex
// in the segment (shared across the processes) for at most 1 ms at a time: the side that publishes a
// ring position wakes the other only when that side has flagged itself asleep, so the fast path makes
// no system call and a late answer costs one wake-up, not a sleep quantum. Between blocks they check
// the deadline and the peer's liveness; a closing channel wakes its peer at once.
//
// Liveness rule, once the peer has attached (before that only the deadline applies):
//   - the peer's closed flag set (its Channel was destroyed): PeerError "... closed the channel" at once,
//     after anything it sent before closing has been delivered;
//   - the peer process has exited: a pidfd taken at attach time (which also sees an exited but not yet
//     reaped child), else kill(pid, 0) == ESRCH; checked at most every millisecond of a wait;
//   - the peer's heartbeat counter, its writes into our inbound ring and its reads from our outbound
//     ring have all stood still for liveness_timeout: PeerError "... silent for N ms".
// heartbeat() increments this side's counter; call it every kHeartbeatPeriod from any thread.
//
// Cleanup rule: the opener unlinks the segment's name as soon as it has attached; the creator unlinks it
// when it first sees the opener attached, or else in its destructor. So once both sides
// are attached nothing is left in /dev/shm even if both are SIGKILLed. A creator killed before any
// opener came leaves its segment behind: the launcher removes `<prefix>*` with list_shm_segments() and
// remove_shm_segment(), and a later create_shm_channel() of the same name replaces a segment whose
// creator is dead.
//
// Threads: each end is used by one thread at a time, except heartbeat(), which any thread may call.
// Both processes must share a pid namespace (same node, same container) for the exit check.

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "transport/channel.h"

namespace ra::transport {

struct ShmChannelOptions {
  // Name of the segment in /dev/shm, e.g. "ra-<job>-r<rank>": unique per job and link, no '/',
  // at most 200 characters.
  std::string segment_name;
  // Bytes per direction, a power of two in [4 KiB, 1 GiB]. Chosen by the creator; the opener takes the
  // segment's own value and ignores this field.
  std::size_t ring_bytes = std::size_t{4} << 20;
  // Who is at the other end, for error messages, e.g. "retriever rank 2". Empty: "peer of shm '<name>'".
  std::string peer_name;
  // How long the peer may show no heartbeat and no ring progress before it is declared silent.
  std::chrono::milliseconds liveness_timeout = kDefaultLivenessTimeout;
  // open_shm_channel only: how long to wait for the creator to create and initialise the segment.
  std::chrono::milliseconds open_timeout{30000};
};

// Retriever side: creates and initialises the segment and returns at once; the peer attaches later
// (sends are buffered in the ring meanwhile). Throws ra::Error for bad options, or when a segment of
// that name exists and its creator is alive.
std::unique_ptr<Channel> create_shm_channel(const ShmChannelOptions& options);

// Worker side: waits up to open_timeout for the segment to appear and be initialised, attaches and
// unlinks its name. Throws PeerError on timeout or when the creator has already exited, ra::Error for
// bad options or a segment that is not ours (wrong magic, version or size) or already taken.
std::unique_ptr<Channel> open_shm_channel(const ShmChannelOptions& options);

// The spin budget of this process's waits on the retriever (creator) side or the worker (opener) side:
// RA_SHM_SPIN_US_RETRIEVER or RA_SHM_SPIN_US_WORKER, else RA_SHM_SPIN_US, else 50 µs; read once. Throws
// ra::Error naming the variable for a value outside 0 to 10^6.
std::chrono::microseconds shm_spin_budget(bool retriever_side);

// Launcher cleanup: unlinks /dev/shm/<name> if it exists. Mappings that processes hold stay valid.
void remove_shm_segment(const std::string& name) noexcept;

// Names (not paths) of the segments in /dev/shm whose name starts with `prefix`, sorted.
std::vector<std::string> list_shm_segments(const std::string& prefix);

// Names of the segments starting with `prefix` that are channels of ours whose creator has exited (a
// job killed before its opener attached, and whose launcher could not clean up, e.g. SIGKILLed too).
// Segments of live processes and files that are not our segments are never listed.
std::vector<std::string> list_stale_shm_segments(const std::string& prefix);

}  // namespace ra::transport
