#include "common/process_usage.h"

#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <thread>

namespace ra {
namespace {

TEST(ProcessUsage, CountsAThreadWhileItRuns) {
  // A first thread, joined, before the count: a runtime that starts a helper thread of its own at the
  // process's first thread creation (ThreadSanitizer does) has it running by then.
  std::thread([] {}).join();
  const ProcessUsage before = read_process_usage();
  std::atomic<bool> stop{false};
  std::thread t([&] {
    while (!stop.load()) std::this_thread::yield();
  });
  const ProcessUsage during = read_process_usage();
  stop = true;
  t.join();
  EXPECT_EQ(during.threads, before.threads + 1);
  EXPECT_EQ(read_process_usage().threads, before.threads);
}

TEST(ProcessUsage, RssGrowsWithTouchedMemory) {
  const ProcessUsage before = read_process_usage();
  constexpr size_t kBytes = size_t{64} << 20;
  auto block = std::make_unique_for_overwrite<char[]>(kBytes);
  // Volatile stores, one per page: clang -O3 drops a new[] and memset whose bytes nothing else reads.
  volatile char* bytes = block.get();
  for (size_t i = 0; i < kBytes; i += 4096) bytes[i] = 1;
  const ProcessUsage after = read_process_usage();
  EXPECT_GE(after.rss_bytes, before.rss_bytes + kBytes / 2) << "RSS " << before.rss_bytes << " -> " << after.rss_bytes;
  EXPECT_EQ(block[kBytes - 4096], 1);
}

TEST(UsageRange, KeepsTheRangeAndTheEnds) {
  UsageRange r;
  r.add({5, 100});
  r.add({7, 300});
  r.add({6, 200});
  EXPECT_EQ(r.samples, 3);
  EXPECT_EQ(r.threads_min, 5);
  EXPECT_EQ(r.threads_max, 7);
  EXPECT_EQ(r.rss_first, 100u);
  EXPECT_EQ(r.rss_last, 200u);
  EXPECT_EQ(r.rss_max, 300u);
}

}  // namespace
}  // namespace ra
