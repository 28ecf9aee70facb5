#pragma once
// The MPI point-to-point Channel (channel.h): for the transport benchmark and as a comparison with UCX
// and shared memory. The pipeline itself uses MPI only to bootstrap (DESIGN §2).
//
// Protocol, on (comm, peer_rank, tag): a message is the 24-byte MessageHeader as one MPI message, then
// the payload as ceil(bytes / 1 GiB) messages of at most 1 GiB (MPI counts are int). MPI's
// non-overtaking rule on one (source, tag, comm) keeps them in order; nothing is copied. The receiver
// polls MPI_Improbe for a header, takes it with MPI_Mrecv, then MPI_Irecv's the payload straight into
// the caller's vector (capacity reused) and polls MPI_Testall. Every wait polls against its deadline
// (spin, then short sleeps).
//
// Liveness: MPI cannot detect a dead or stopped peer (a failed rank usually takes the job down), so the
// only protection is the deadline: a wait with kNoDeadline on a dead peer waits until mpirun ends the
// job. heartbeat() is a no-op. A send or receive that misses its deadline after it started leaves the
// channel broken (every later call throws): MPI cannot reliably cancel a send, so such requests stay
// pending (and may still read the payload) until the channel is destroyed; treat the PeerError as fatal.
//
// Threads: each channel is used by one thread at a time. MPI must be initialised with
// MPI_Init_thread; MPI_THREAD_SERIALIZED suffices when one thread at a time calls MPI, and
// MPI_THREAD_MULTIPLE is needed when channels are driven from several threads at once.
// make_mpi_channel() checks for at least MPI_THREAD_SERIALIZED.

#include <mpi.h>

#include <memory>
#include <string>

#include "transport/channel.h"

namespace ra::transport {

struct MpiChannelOptions {
  std::string peer_name;  // for error messages
  int tag = 0;            // both ends use the same tag; distinct per channel between two ranks
};

// A channel to `peer_rank` of `comm` (which must outlive it). Throws ra::Error when MPI is not
// initialised with at least MPI_THREAD_SERIALIZED, or the rank or tag is out of range.
std::unique_ptr<Channel> make_mpi_channel(MPI_Comm comm, int peer_rank, MpiChannelOptions options);

}  // namespace ra::transport
