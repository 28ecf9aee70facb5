#pragma once
// Start-up of an `ra-bench-transport` rank under mpirun: MPI itself, then the channels between the worker
// (rank 0) and each retriever (ranks 1..R) over the chosen transport, set up the way the pipeline's
// launcher/process/peer_links.cpp does it:
//   shm: each retriever creates "<prefix><job>-r<rank>", a barrier, the worker opens them;
//   ucx: every rank's UCX worker address is all-gathered over MPI, then each side connects;
//   mpi: point-to-point on a duplicate of MPI_COMM_WORLD (mpi_channel.h).
// Every MPI step is non-blocking and polled against a deadline, so a rank that dies in start-up turns
// into an error naming the step rather than a hang.

#include <mpi.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "transport/bootstrap/mpi_session.h"
#include "transport/channel.h"

namespace ra::bench {

// The prefix of every shm segment this benchmark creates; `ra bench transport` removes leftovers of
// "<kShmPrefix><job>-" after each run.
inline constexpr const char* kShmPrefix = "ra-bench-";

// MPI_Init_thread(SERIALIZED) (the MPI channel needs it) with errors returned as codes; finalises in
// the destructor unless abandon() was called (an exit after a failure, where a peer may be dead).
// The start-up session of the pipeline, at the thread level the MPI channel needs.
using BenchMpi = transport::MpiSession;
inline constexpr int kBenchMpiThreadLevel = MPI_THREAD_SERIALIZED;

struct LinkOptions {
  std::string transport;  // "shm", "ucx" or "mpi"
  std::string job;        // unique per run; names the shm segments
  std::chrono::milliseconds liveness_timeout = transport::kDefaultLivenessTimeout;
};

struct BenchLinks {
  std::shared_ptr<void> state;  // the UCX worker or the duplicated communicator; outlives the channels
  std::vector<std::unique_ptr<transport::Channel>> channels;  // worker: [retriever 1..R]; retriever: [worker]
  std::string detail;  // for the report: UCX lanes of the first channel, else empty
  std::vector<transport::Channel*> raw() const;
};

// "ra-bench-<job>-r<rank>".
std::string bench_segment_name(const std::string& job, int rank);

// Collective: every rank calls it. Throws ra::Error for a transport this build lacks, PeerError when a
// peer does not show up in time.
BenchLinks connect_bench_links(BenchMpi& mpi, const LinkOptions& options);

}  // namespace ra::bench
