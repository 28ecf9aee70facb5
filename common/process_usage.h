#pragma once
// The calling process's thread count and resident memory, from /proc/self/stat: what a long run samples
// to show that neither grows once decoding has started (issue 16 item 5: no thread storm from index
// maintenance; issue 20 item 6: no leak). One open and read per sample, so callers sample every many
// steps, never per token.

#include <cstddef>
#include <cstdint>

namespace ra {

struct ProcessUsage {
  int64_t threads = 0;
  size_t rss_bytes = 0;
};

// Throws ra::Error when /proc/self/stat cannot be read or parsed (not Linux, no procfs).
ProcessUsage read_process_usage();

// Samples of one process over a phase (e.g. a retriever's decode steps): the range of its thread count
// and its resident memory at the first and last samples and at the peak.
struct UsageRange {
  int64_t samples = 0;
  int64_t threads_min = 0, threads_max = 0;
  size_t rss_first = 0, rss_last = 0, rss_max = 0;

  void add(const ProcessUsage& u);
};

}  // namespace ra
