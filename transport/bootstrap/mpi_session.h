#pragma once
// The MPI start-up of a pipeline job (DESIGN §2): MPI starts the ranks and carries the few start-up
// exchanges (the plan check, shm names, UCX addresses, barriers); it is never on the per-token path.
//
// Every collective here is non-blocking and polled against a deadline: a rank that died or hangs in
// start-up turns into a TimeoutError naming the step, never a hang.

#include <mpi.h>

#include <string>
#include <vector>

#include "transport/channel.h"

namespace ra::transport {

class MpiSession {
 public:
  // MPI_Init_thread at `required` (FUNNELED: only the main thread calls MPI; the MPI channel of the
  // transport benchmark needs SERIALIZED). Throws ra::Error when MPI provides less.
  MpiSession(int* argc, char*** argv, int required = MPI_THREAD_FUNNELED);
  // MPI_Finalize, unless abandon() was called.
  ~MpiSession();
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  const std::string& host() const { return host_; }

  // Rank 0's `text` on every rank (other ranks' argument is ignored).
  std::string broadcast(const std::string& text, const char* what, Deadline deadline);
  // Every rank's `mine`, indexed by rank.
  std::vector<std::string> allgather(const std::string& mine, const char* what, Deadline deadline);
  // Every rank says whether its start-up step succeeded; returns the lowest failing rank, or -1.
  int first_failure(bool ok, const char* what, Deadline deadline);
  void barrier(const char* what, Deadline deadline);

  // Skip MPI_Finalize in the destructor: for exits after a peer failure, where Finalize could block
  // on a dead rank. The process then exits non-zero and mpirun ends the job.
  void abandon() { abandoned_ = true; }

 private:
  void wait(MPI_Request& request, const char* what, Deadline deadline);

  int rank_ = 0;
  int size_ = 1;
  std::string host_;
  bool abandoned_ = false;
};

}  // namespace ra::transport
