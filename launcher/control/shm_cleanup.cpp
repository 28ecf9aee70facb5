#include "launcher/control/shm_cleanup.h"

#include <cstdio>

#ifdef RA_HAVE_SHM
#include "transport/shm/shm_channel.h"
#endif

namespace ra {

void remove_leftover_shm_segments(const std::string& prefix) {
#ifdef RA_HAVE_SHM
  for (const std::string& name : transport::list_shm_segments(prefix)) {
    std::fprintf(stderr, "ra: removing leftover shared-memory segment /dev/shm/%s\n", name.c_str());
    transport::remove_shm_segment(name);
  }
#else
  (void)prefix;
#endif
}

void remove_stale_shm_segments(const std::string& prefix) {
#ifdef RA_HAVE_SHM
  for (const std::string& name : transport::list_stale_shm_segments(prefix)) {
    std::fprintf(stderr, "ra: removing shared-memory segment /dev/shm/%s of an exited job\n", name.c_str());
    transport::remove_shm_segment(name);
  }
#else
  (void)prefix;
#endif
}

}  // namespace ra
