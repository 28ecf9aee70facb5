#pragma once
// After a job: shared-memory segments its ranks left in /dev/shm (a rank killed before it could unlink
// its own), removed by the `ra` process that started the job.

#include <string>

namespace ra {

// Removes every /dev/shm segment whose name starts with `prefix`, saying so on stderr for each
// ("ra: removing leftover shared-memory segment /dev/shm/NAME"). A no-op in builds without shm.
void remove_leftover_shm_segments(const std::string& prefix);

// Before a job: removes the segments of earlier jobs (names starting with `prefix`) whose creating
// process has exited — left when the job and its launcher were killed together — saying so on stderr
// for each. Segments of running jobs are left alone.
void remove_stale_shm_segments(const std::string& prefix);

}  // namespace ra
