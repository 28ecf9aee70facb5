#pragma once
// The one connect path of every multi-process job (the pipeline's ranks and `ra bench transport`):
// channels between rank 0 (the GPU worker) and each other rank (the retrievers), over the chosen
// transport, with the few start-up exchanges done over MPI (DESIGN §2):
//   shm: each rank > 0 creates its segment, a barrier, rank 0 opens them all;
//   ucx: every rank's UCX worker address is all-gathered, then each side connects;
//   mpi: point-to-point on a duplicate of MPI_COMM_WORLD (mpi_channel.h; benchmarks only).
// A final barrier ("transport connected") ends it. Every MPI step polls the deadline, so a rank that
// dies in start-up turns into an error naming the step rather than a hang.

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "transport/bootstrap/mpi_session.h"
#include "transport/channel.h"

namespace ra::transport {

enum class LinkKind { kShm, kUcx, kMpi };

// Whether this build has the transport (shm needs Boost.Interprocess, ucx libucx; mpi is always there
// where this library is built). Callers check first and say what to do instead, in their own words.
bool link_kind_built(LinkKind kind);

struct LinkOptions {
  LinkKind kind = LinkKind::kShm;
  // shm: the name of the segment rank r > 0 creates (and rank 0 opens).
  std::function<std::string(int rank)> segment_name;
  // How errors name rank r, e.g. "retriever rank 2 on host a".
  std::function<std::string(int rank)> peer_name;
  std::chrono::milliseconds liveness_timeout = kDefaultLivenessTimeout;  // shm and ucx channels
  Deadline deadline = kNoDeadline;  // of every start-up step
};

struct Links {
  std::shared_ptr<void> state;  // the UCX worker or the duplicated communicator; outlives the channels
  std::vector<std::unique_ptr<Channel>> channels;  // rank 0: [rank 1..size-1]; other ranks: [rank 0]
  std::vector<Channel*> raw() const;
};

// Collective: every rank calls it with the same kind. RA_ASSERTs link_kind_built(options.kind); throws
// PeerError / TimeoutError when a peer does not show up in time.
Links connect_links(MpiSession& mpi, const LinkOptions& options);

// For reports: UCX's description of the first channel (ucx_channel_transports: ucp_ep_print_info's
// text, one line a lane); empty for the other transports or without channels.
std::string first_link_info(const Links& links, LinkKind kind);

}  // namespace ra::transport
