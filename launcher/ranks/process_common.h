#pragma once
// What both pipeline processes do around their main loop: read the plan file named by --plan, report
// errors with rank and host, and leave cleanly on SIGINT/SIGTERM.

#include <string>

#include "launcher/plan/run_plan.h"
#include "transport/bootstrap/mpi_session.h"

namespace ra {

// The main() of a pipeline process: asks to die with its parent (die_with_parent), starts MPI and
// returns run(mpi, argc, argv). On any exception it reports it with rank and host, removes the
// registered segment and quits at once with 1: MPI_Finalize or a channel's teardown could wait on a dead
// peer, and mpirun ends the other ranks. The worker (rank 0) leaves its exit code in the job directory
// (kWorkerExitFile of run_plan.h, beside the plan file), where `ra` bounds how long mpirun may take to end after it. A
// retriever that lost its worker (a PeerError) also ends its host's Open MPI daemon when that is its
// parent: the job is over, and on a host cut off from the network nobody else can.
int run_pipeline_process(const char* program, int argc, char** argv,
                         int (*run)(transport::MpiSession& mpi, int argc, char** argv));

// The kernel sends this process SIGTERM when its parent (mpirun) dies, however it dies: a SIGKILLed
// mpirun cannot stop its ranks itself, and they must not run on as orphans. Exits at once if the parent
// is already gone.
void die_with_parent(const char* program);

// Reads and checks the plan file; errors name the file.
RunPlan read_plan_file(const std::string& path);

// The value of "--plan FILE" in argv, or throws ra::Error with a usage line for `program`.
std::string plan_path_from_args(int argc, char** argv, const char* program);

// SIGINT/SIGTERM/SIGHUP: remove `shm_segment` (may be empty) from /dev/shm and _exit(128 + signal).
// The name is copied into static storage, so the handler does only async-signal-safe work.
void install_exit_signal_handlers(const std::string& shm_segment);

// How this rank's threads wait, as its environment set them (the launcher's per-rank choices, or the
// user's): "waits: OpenMP PASSIVE, shm spin 2000 us" ("OpenMP default" when OMP_WAIT_POLICY is unset;
// the spin only over shared memory). For the ranks' first log lines: what each rank really got.
std::string describe_rank_waits(const RunPlan& plan, bool retriever_side);

// Removes the segment registered by install_exit_signal_handlers, for exits after an error.
void remove_registered_segment() noexcept;

// Prints "<program> rank R on host H: error: <what>" to stderr and flushes both streams.
void report_error(const char* program, int rank, const std::string& host, const char* what);

}  // namespace ra
