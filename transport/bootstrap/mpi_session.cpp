#include "transport/bootstrap/mpi_session.h"

#include <unistd.h>

#include <thread>

#include <fmt/format.h>

namespace ra::transport {
namespace {

void check(int rc, const char* call) {
  if (rc != MPI_SUCCESS) {
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, text, &len);
    throw Error(fmt::format("{} failed: {}", call, std::string_view(text, static_cast<size_t>(len))));
  }
}

}  // namespace

MpiSession::MpiSession(int* argc, char*** argv, int required) {
  int provided = 0;
  check(MPI_Init_thread(argc, argv, required, &provided), "MPI_Init_thread");
  // Errors come back as codes, turned into exceptions with a message, never an abort mid-job.
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
  char name[256] = {};
  gethostname(name, sizeof(name) - 1);
  host_ = name;
  if (provided < required) {
    MPI_Finalize();
    throw Error(fmt::format("this MPI provides thread level {}, below the {} required", provided, required));
  }
}

MpiSession::~MpiSession() {
  if (!abandoned_) MPI_Finalize();
}

void MpiSession::wait(MPI_Request& request, const char* what, Deadline deadline) {
  // Poll: fast at first (start-up exchanges finish in microseconds on one node), then gently.
  for (int spins = 0;; ++spins) {
    int done = 0;
    check(MPI_Test(&request, &done, MPI_STATUS_IGNORE), what);
    if (done) return;
    if (SteadyClock::now() >= deadline) {
      throw TimeoutError(fmt::format("rank {} on {}: MPI start-up step '{}' did not complete in time (a rank died "
                                     "or hangs during start-up)",
                                     rank_, host_, what));
    }
    if (spins > 1000) std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
}

std::string MpiSession::broadcast(const std::string& text, const char* what, Deadline deadline) {
  uint64_t bytes = rank_ == 0 ? text.size() : 0;
  MPI_Request req;
  check(MPI_Ibcast(&bytes, 1, MPI_UINT64_T, 0, MPI_COMM_WORLD, &req), what);
  wait(req, what, deadline);
  std::string out = rank_ == 0 ? text : std::string(bytes, '\0');
  check(MPI_Ibcast(out.data(), static_cast<int>(bytes), MPI_CHAR, 0, MPI_COMM_WORLD, &req), what);
  wait(req, what, deadline);
  return out;
}

std::vector<std::string> MpiSession::allgather(const std::string& mine, const char* what, Deadline deadline) {
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

int MpiSession::first_failure(bool ok, const char* what, Deadline deadline) {
  const int mine = ok ? size_ : rank_;
  int lowest = size_;
  MPI_Request req;
  check(MPI_Iallreduce(&mine, &lowest, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD, &req), what);
  wait(req, what, deadline);
  return lowest == size_ ? -1 : lowest;
}

void MpiSession::barrier(const char* what, Deadline deadline) {
  MPI_Request req;
  check(MPI_Ibarrier(MPI_COMM_WORLD, &req), what);
  wait(req, what, deadline);
}

}  // namespace ra::transport
