#pragma once
// Start-up of a pipeline rank, after mpirun has started it (DESIGN §2):
//  1. agree_on_plan: rank 0's plan text goes to every rank; a rank whose own plan differs names every
//     differing field, and every rank stops with that message.
//  2. connect_peers: the channels between the worker (rank 0) and each retriever, over the plan's
//     transport (transport/bootstrap/links.h); shm segments are "ra-<job_id>-r<rank>".
// Both are bounded by deadlines; MPI is not used again until the final barrier.

#include <memory>
#include <string>
#include <vector>

#include "launcher/plan/run_plan.h"
#include "transport/bootstrap/links.h"
#include "transport/bootstrap/mpi_session.h"
#include "transport/channel.h"

namespace ra {

// Throws ra::Error naming this rank and each differing field when the plans differ.
void agree_on_plan(transport::MpiSession& mpi, const RunPlan& plan, const std::string& role);

// "ra-<job_id>-r<rank>": the shm segment between the worker and retriever rank `rank`.
std::string shm_segment_name(const RunPlan& plan, int rank);

// "retriever rank 2 on host node1" / "worker rank 0 on host node1".
std::string rank_name(const RunPlan& plan, int rank);

// The channels between the worker and the retrievers (transport/bootstrap/links.h): on the worker
// [retriever i], on a retriever [the worker].
using PeerLinks = transport::Links;

// transport::connect_links over the plan's transport, naming the ranks by role and host. Throws ra::Error
// when this build lacks that transport, naming the one to use instead.
PeerLinks connect_peers(transport::MpiSession& mpi, const RunPlan& plan);

}  // namespace ra
