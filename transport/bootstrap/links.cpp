#include "transport/bootstrap/links.h"

#include <mpi.h>

#include <span>
#include <string_view>

#include "common/error.h"
#include "transport/mpi/mpi_channel.h"
#ifdef RA_HAVE_SHM
#include "transport/shm/shm_channel.h"
#endif
#ifdef RA_HAVE_UCX
#include "transport/ucx/ucx_channel.h"
#endif

namespace ra::transport {
namespace {

void check(int rc, const char* call) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, text, &len);
  raise("{} failed: {}", call, std::string_view(text, static_cast<size_t>(len)));
}

#ifdef RA_HAVE_SHM
void connect_shm(MpiSession& mpi, const LinkOptions& options, Links& links) {
  ShmChannelOptions o;
  o.liveness_timeout = options.liveness_timeout;
  if (mpi.rank() > 0) {
    o.segment_name = options.segment_name(mpi.rank());
    o.peer_name = options.peer_name(0);
    links.channels.push_back(create_shm_channel(o));
  }
  mpi.barrier("shm segments created", options.deadline);
  if (mpi.rank() == 0) {
    for (int r = 1; r < mpi.size(); ++r) {
      o.segment_name = options.segment_name(r);
      o.peer_name = options.peer_name(r);
      links.channels.push_back(open_shm_channel(o));
    }
  }
}
#endif

#ifdef RA_HAVE_UCX
void connect_ucx(MpiSession& mpi, const LinkOptions& options, Links& links) {
  auto worker = std::make_shared<UcxWorker>();
  const auto address = worker->local_address();
  const auto all = mpi.allgather(std::string(reinterpret_cast<const char*>(address.data()), address.size()),
                                 "UCX address exchange", options.deadline);
  auto bytes = [&](int r) { return std::as_bytes(std::span(all[static_cast<size_t>(r)])); };
  UcxChannelOptions o;
  o.liveness_timeout = options.liveness_timeout;
  if (mpi.rank() == 0) {
    for (int r = 1; r < mpi.size(); ++r) {
      o.peer_name = options.peer_name(r);
      o.channel_id = static_cast<uint32_t>(r);
      links.channels.push_back(worker->connect(bytes(r), o));
    }
  } else {
    o.peer_name = options.peer_name(0);
    o.channel_id = static_cast<uint32_t>(mpi.rank());
    links.channels.push_back(worker->connect(bytes(0), o));
  }
  links.state = worker;
}
#endif

void connect_mpi(MpiSession& mpi, const LinkOptions& options, Links& links) {
  // A communicator of our own, so the start-up collectives never meet the channel's messages.
  auto comm = std::shared_ptr<MPI_Comm>(new MPI_Comm(MPI_COMM_NULL), [](MPI_Comm* c) {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized && *c != MPI_COMM_NULL) MPI_Comm_free(c);
    delete c;
  });
  check(MPI_Comm_dup(MPI_COMM_WORLD, comm.get()), "MPI_Comm_dup");
  MPI_Comm_set_errhandler(*comm, MPI_ERRORS_RETURN);
  MpiChannelOptions o;
  if (mpi.rank() == 0) {
    for (int r = 1; r < mpi.size(); ++r) {
      o.peer_name = options.peer_name(r);
      links.channels.push_back(make_mpi_channel(*comm, r, o));
    }
  } else {
    o.peer_name = options.peer_name(0);
    links.channels.push_back(make_mpi_channel(*comm, 0, o));
  }
  links.state = comm;
}

}  // namespace

bool link_kind_built(LinkKind kind) {
  switch (kind) {
#ifdef RA_HAVE_SHM
    case LinkKind::kShm: return true;
#endif
#ifdef RA_HAVE_UCX
    case LinkKind::kUcx: return true;
#endif
    case LinkKind::kMpi: return true;
    default: return false;
  }
}

std::vector<Channel*> Links::raw() const {
  std::vector<Channel*> out;
  for (const auto& c : channels) out.push_back(c.get());
  return out;
}

Links connect_links(MpiSession& mpi, const LinkOptions& options) {
  RA_ASSERT_MSG(link_kind_built(options.kind), "link kind {} is not in this build", static_cast<int>(options.kind));
  Links links;
  switch (options.kind) {
#ifdef RA_HAVE_SHM
    case LinkKind::kShm: connect_shm(mpi, options, links); break;
#endif
#ifdef RA_HAVE_UCX
    case LinkKind::kUcx: connect_ucx(mpi, options, links); break;
#endif
    case LinkKind::kMpi: connect_mpi(mpi, options, links); break;
    default: break;  // not in this build: asserted above
  }
  mpi.barrier("transport connected", options.deadline);
  return links;
}

std::string first_link_info(const Links& links, LinkKind kind) {
#ifdef RA_HAVE_UCX
  if (kind == LinkKind::kUcx && !links.channels.empty()) return ucx_channel_transports(*links.channels.front());
#endif
  (void)links;
  (void)kind;
  return {};
}

}  // namespace ra::transport
