#include "launcher/bench_transport/bench_links.h"

#include <fmt/format.h>
#include <unistd.h>

#include <thread>

#include "common/error.h"
#include "transport/mpi/mpi_channel.h"
#ifdef RA_HAVE_SHM
#include "transport/shm/shm_channel.h"
#endif
#ifdef RA_HAVE_UCX
#include "transport/ucx/ucx_channel.h"
#endif

namespace ra::bench {
namespace {

constexpr std::chrono::seconds kStartupTimeout{60};

void check(int rc, const char* call) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, text, &len);
  raise("{} failed: {}", call, std::string_view(text, static_cast<size_t>(len)));
}

std::string rank_name(int rank, const std::string& host) {
  return fmt::format("{} rank {} on host {}", rank == 0 ? "worker" : "retriever", rank, host);
}

}  // namespace

std::vector<transport::Channel*> BenchLinks::raw() const {
  std::vector<transport::Channel*> out;
  for (const auto& c : channels) out.push_back(c.get());
  return out;
}

std::string bench_segment_name(const std::string& job, int rank) {
  return fmt::format("{}{}-r{}", kShmPrefix, job, rank);
}

BenchLinks connect_bench_links(BenchMpi& mpi, const LinkOptions& options) {
  BenchLinks links;
  const auto deadline = transport::deadline_after(kStartupTimeout);
  const int rank = mpi.rank();
  const std::vector<std::string> hosts = mpi.allgather(mpi.host(), "host names", deadline);
  auto name = [&](int r) { return rank_name(r, hosts[static_cast<size_t>(r)]); };

  if (options.transport == "shm") {
#ifdef RA_HAVE_SHM
    for (int r = 1; r < mpi.size(); ++r) {
      RA_REQUIRE(hosts[static_cast<size_t>(r)] == hosts[0], "--transport shm needs every rank on one host; rank {} "
                 "runs on {}, the worker on {}", r, hosts[static_cast<size_t>(r)], hosts[0]);
    }
    transport::ShmChannelOptions o;
    o.liveness_timeout = options.liveness_timeout;
    if (rank > 0) {
      o.segment_name = bench_segment_name(options.job, rank);
      o.peer_name = name(0);
      links.channels.push_back(transport::create_shm_channel(o));
    }
    mpi.barrier("shm segments created", deadline);
    if (rank == 0) {
      for (int r = 1; r < mpi.size(); ++r) {
        o.segment_name = bench_segment_name(options.job, r);
        o.peer_name = name(r);
        links.channels.push_back(transport::open_shm_channel(o));
      }
    }
#else
    raise("this build has no shared-memory transport (Boost.Interprocess was not found)");
#endif
  } else if (options.transport == "ucx") {
#ifdef RA_HAVE_UCX
    auto worker = std::make_shared<transport::UcxWorker>();
    const auto address = worker->local_address();
    const auto all = mpi.allgather(std::string(reinterpret_cast<const char*>(address.data()), address.size()),
                                   "UCX address exchange", deadline);
    auto bytes = [&](int r) { return std::as_bytes(std::span(all[static_cast<size_t>(r)])); };
    transport::UcxChannelOptions o;
    o.liveness_timeout = options.liveness_timeout;
    if (rank == 0) {
      for (int r = 1; r < mpi.size(); ++r) {
        o.peer_name = name(r);
        o.channel_id = static_cast<uint32_t>(r);
        links.channels.push_back(worker->connect(bytes(r), o));
      }
    } else {
      o.peer_name = name(0);
      o.channel_id = static_cast<uint32_t>(rank);
      links.channels.push_back(worker->connect(bytes(0), o));
    }
    links.state = worker;
#else
    raise("this build has no UCX transport (libucx-dev was not found)");
#endif
  } else if (options.transport == "mpi") {
    // A communicator of our own, so the start-up collectives never meet the channel's messages.
    auto comm = std::shared_ptr<MPI_Comm>(new MPI_Comm(MPI_COMM_NULL), [](MPI_Comm* c) {
      int finalized = 0;
      MPI_Finalized(&finalized);
      if (!finalized && *c != MPI_COMM_NULL) MPI_Comm_free(c);
      delete c;
    });
    check(MPI_Comm_dup(MPI_COMM_WORLD, comm.get()), "MPI_Comm_dup");
    MPI_Comm_set_errhandler(*comm, MPI_ERRORS_RETURN);
    transport::MpiChannelOptions o;
    if (rank == 0) {
      for (int r = 1; r < mpi.size(); ++r) {
        o.peer_name = name(r);
        links.channels.push_back(transport::make_mpi_channel(*comm, r, o));
      }
    } else {
      o.peer_name = name(0);
      links.channels.push_back(transport::make_mpi_channel(*comm, 0, o));
    }
    links.state = comm;
  } else {
    raise("unknown transport '{}': use shm, ucx or mpi", options.transport);
  }
  mpi.barrier("transport connected", deadline);
#ifdef RA_HAVE_UCX
  if (options.transport == "ucx" && !links.channels.empty()) {
    links.detail = transport::ucx_channel_transports(*links.channels.front());
  }
#endif
  return links;
}

}  // namespace ra::bench
