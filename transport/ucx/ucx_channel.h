#pragma once
// The UCX Channel (channel.h, DESIGN §2): ucp tag messages between two UCX workers, any node to any node.
//
// One UcxWorker per process (one ucp context + one ucp worker, UCS_THREAD_MODE_MULTI because heartbeat()
// runs on another thread). The caller exchanges local_address() bytes out of band (MPI bootstrap in
// production, a pipe in tests) and calls connect() once per peer; both ends of a channel must pass the
// same channel_id.
//
// Protocol:
//  - Tags are exact-match: tag = channel_id << 32 | stream; streams: 1 = message, 2 = heartbeat,
//    3 = fragment. A receive matches any sender on the worker, so channel_id must be unique among the
//    channels of one worker (connect() refuses a duplicate); then a recv on one channel never consumes
//    another's messages, and fragments from the one sender arrive in order.
//  - A message with a payload of at most 4 MiB is ONE tagged message: the 24-byte MessageHeader then
//    the payload, sent as a two-entry iov straight from the caller's buffer (no staging copy). UCX picks
//    eager or rendezvous by size. A larger payload travels as a header-only message followed by 4 MiB
//    fragments, at most 4 in flight each way. Why: UCX sends everything for one endpoint, heartbeats
//    included, down one lane (one TCP connection), so one 1 GB message would hold the sender's
//    heartbeats back past the liveness timeout; between fragments they get through, and each fragment
//    that lands also counts as a sign of life.
//  - The receiver probes the message, sizes the payload vector from the probed length or the header
//    (capacity reused), and receives straight into [header, payload]. A length that disagrees with
//    header.bytes, or a short fragment, is a PeerError.
//  - Liveness: heartbeat() sends an 8-byte counter on the heartbeat stream (at most one in flight; a
//    beat that cannot leave yet is skipped, so beats never queue up behind a stopped peer). The owner's
//    waits and heartbeat() itself drain incoming heartbeats, so they never pile up. A wait throws
//    PeerError when (a) the endpoint reported an error (UCP_ERR_HANDLING_MODE_PEER: the peer process
//    died or destroyed its worker), or (b) no heartbeat, message or fragment has arrived for
//    liveness_timeout, or (c) the deadline passed, or (d) the peer said goodbye (below). The silence
//    clock starts at connect().
//  - A send or receive abandoned on (a)-(d) after it started is cancelled first (the endpoint is
//    force-closed, so the caller's buffer is free again) and leaves the channel broken: the stream may
//    have lost a message, so every later call throws. A recv that times out before a message started
//    arriving leaves the channel usable.
//  - Closing (destruction, or breaking): UCX does not tell the peer when one endpoint closes while its
//    worker lives on, so the closing end sends a goodbye (heartbeat value 2^64-1), flushes (on
//    destruction only; bounded by liveness_timeout, and it needs the peer to progress), then
//    force-closes. The peer receives every message sent before, then gets PeerError "closed its end".
//
// Transports: UCX chooses (UCX_TLS). Peer error handling needs transports that report a dead peer, and
// UCX 1.13's shared-memory transports (posix, sysv) do not by default, so intra-node traffic runs over
// tcp on loopback (the shm Channel is the fast path within a node). Do not force shared memory with
// UCX_POSIX_ERROR_HANDLING=y / UCX_SYSV_ERROR_HANDLING=y: a killed peer then goes unnoticed by UCX and a
// force close no longer releases a stuck rendezvous send.
//
// Threads: a worker's channels may be used from different threads at once; one channel is used by one
// thread at a time, except heartbeat(), which any thread may call. Stop heartbeat threads before
// destroying the channel. Channels keep their worker's UCX state alive, so destruction order is free.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "transport/channel.h"

namespace ra::transport {

struct UcxChannelOptions {
  std::string peer_name;  // for error messages, e.g. "retriever rank 2 on host node1"
  std::chrono::milliseconds liveness_timeout = kDefaultLivenessTimeout;
  uint32_t channel_id = 0;  // same on both ends; unique among the channels of one worker
};

// Counters of one UCX channel, for tests and benchmarks.
struct UcxChannelStats {
  uint64_t heartbeats_sent = 0;
  uint64_t heartbeats_received = 0;  // drained from the heartbeat stream
  uint64_t messages_sent = 0;
  uint64_t messages_received = 0;
};

namespace detail {
struct UcxWorkerState;
}

class UcxWorker {
 public:
  // Creates the ucp context (UCP_FEATURE_TAG) and a multi-threaded worker. Throws ra::Error on failure.
  UcxWorker();
  ~UcxWorker();
  UcxWorker(const UcxWorker&) = delete;
  UcxWorker& operator=(const UcxWorker&) = delete;

  // This worker's address, to hand to the peer's connect().
  std::vector<std::byte> local_address() const;

  // An endpoint to the worker whose local_address() is `remote_address`, wrapped as a Channel. Throws
  // ra::Error when the address is malformed, the channel id is taken, or UCX refuses the endpoint.
  std::unique_ptr<Channel> connect(std::span<const std::byte> remote_address, UcxChannelOptions options);

 private:
  std::shared_ptr<detail::UcxWorkerState> state_;
};

// Counters of a channel made by UcxWorker::connect(). RA_ASSERTs that `channel` is one.
UcxChannelStats ucx_channel_stats(const Channel& channel);

// The transport lanes UCX chose for a channel's endpoint (ucp_ep_print_info), for logs and docs.
std::string ucx_channel_transports(const Channel& channel);

}  // namespace ra::transport
