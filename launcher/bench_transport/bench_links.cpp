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

BenchMpi::BenchMpi(int* argc, char*** argv) {
  int provided = 0;
  check(MPI_Init_thread(argc, argv, MPI_THREAD_SERIALIZED, &provided), "MPI_Init_thread");
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
  char name[256] = {};
  gethostname(name, sizeof(name) - 1);
  host_ = name;
  RA_REQUIRE(provided >= MPI_THREAD_SERIALIZED, "this MPI provides thread level {}; the MPI channel needs "
             "MPI_THREAD_SERIALIZED ({})", provided, MPI_THREAD_SERIALIZED);
}

BenchMpi::~BenchMpi() {
  if (!abandoned_) MPI_Finalize();
}

void BenchMpi::wait(MPI_Request& request, const char* what, transport::Deadline deadline) {
  for (int spins = 0;; ++spins) {
    int done = 0;
    check(MPI_Test(&request, &done, MPI_STATUS_IGNORE), what);
    if (done) return;
    if (transport::SteadyClock::now() >= deadline) {
      throw transport::TimeoutError(fmt::format("rank {} on {}: MPI start-up step '{}' did not complete in time "
                                                "(a rank died or hangs)", rank_, host_, what));
    }
    if (spins > 1000) std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
}

std::string BenchMpi::broadcast(const std::string& text, const char* what, transport::Deadline deadline) {
  uint64_t bytes = rank_ == 0 ? text.size() : 0;
  MPI_Request req;
  check(MPI_Ibcast(&bytes, 1, MPI_UINT64_T, 0, MPI_COMM_WORLD, &req), what);
  wait(req, what, deadline);
  std::string out = rank_ == 0 ? text : std::string(bytes, '\0');
  check(MPI_Ibcast(out.data(), static_cast<int>(bytes), MPI_CHAR, 0, MPI_COMM_WORLD, &req), what);
  wait(req, what, deadline);
  return out;
}

std::vector<std::string> BenchMpi::allgather(const std::string& mine, const char* what, transport::Deadline deadline) {
  const int my_bytes = static_cast<int>(mine.size());
  std::vector<int> counts(static_cast<size_t>(size_));
  MPI_Request req;
  check(MPI_Iallgather(&my_bytes, 1, MPI_INT, counts.data(), 1, MPI_INT, MPI_COMM_WORLD, &req), what);
  wait(req, what, deadline);
  std::vector<int> displs(static_cast<size_t>(size_));
  int total = 0;
  for (int r = 0; r < size_; ++r) {
    displs[static_cast<size_t>(r)] = total;
    total += counts[static_cast<size_t>(r)];
  }
  std::string all(static_cast<size_t>(total), '\0');
  check(MPI_Iallgatherv(mine.data(), my_bytes, MPI_CHAR, all.data(), counts.data(), displs.data(), MPI_CHAR,
                        MPI_COMM_WORLD, &req),
        what);
  wait(req, what, deadline);
  std::vector<std::string> out;
  for (int r = 0; r < size_; ++r) {
    out.push_back(all.substr(static_cast<size_t>(displs[static_cast<size_t>(r)]),
                             static_cast<size_t>(counts[static_cast<size_t>(r)])));
  }
  return out;
}

void BenchMpi::barrier(const char* what, transport::Deadline deadline) {
  MPI_Request req;
  check(MPI_Ibarrier(MPI_COMM_WORLD, &req), what);
  wait(req, what, deadline);
}

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
