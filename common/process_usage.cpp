#include "common/process_usage.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "common/error.h"

namespace ra {

ProcessUsage read_process_usage() {
  // /proc/self/stat: "pid (comm) state ppid ..."; comm may hold spaces and parentheses, so fields are
  // counted from the last ')'. After it: field 3 (state) ... field 20 num_threads, field 24 rss (pages).
  char buf[1024];
  FILE* f = std::fopen("/proc/self/stat", "r");
  RA_REQUIRE(f != nullptr, "process usage: cannot open /proc/self/stat: {}", std::strerror(errno));
  const size_t n = std::fread(buf, 1, sizeof(buf) - 1, f);
  std::fclose(f);
  buf[n] = '\0';
  const char* p = std::strrchr(buf, ')');
  RA_REQUIRE(p != nullptr, "process usage: /proc/self/stat has no ')'");
  // After ')': state is field 3, so field f is the (f - 2)-th word: num_threads 18th, rss 22nd.
  long long threads = 0, rss_pages = 0;
  int got = 0;
  const char* w = p + 1;
  for (int word = 1; word <= 22 && *w != '\0'; ++word) {
    while (*w == ' ') ++w;
    if (word == 18 || word == 22) {
      char* end = nullptr;
      const long long v = std::strtoll(w, &end, 10);
      if (end != w) {
        (word == 18 ? threads : rss_pages) = v;
        ++got;
      }
    }
    while (*w != ' ' && *w != '\0') ++w;
  }
  RA_REQUIRE(got == 2 && threads > 0 && rss_pages >= 0, "process usage: cannot parse /proc/self/stat");
  return {threads, static_cast<size_t>(rss_pages) * static_cast<size_t>(sysconf(_SC_PAGESIZE))};
}

void UsageRange::add(const ProcessUsage& u) {
  if (samples == 0) {
    threads_min = threads_max = u.threads;
    rss_first = rss_max = u.rss_bytes;
  }
  threads_min = std::min(threads_min, u.threads);
  threads_max = std::max(threads_max, u.threads);
  rss_last = u.rss_bytes;
  rss_max = std::max(rss_max, u.rss_bytes);
  ++samples;
}

}  // namespace ra
