// The server's small parts: the bounded FIFO, stop strings over streamed pieces, a job's hand-over
// between threads, and the context registry.

#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "gpu_worker/serve/api_error.h"
#include "gpu_worker/serve/bounded_queue.h"
#include "gpu_worker/serve/context_registry.h"
#include "gpu_worker/serve/job.h"
#include "gpu_worker/serve/stop_matcher.h"

namespace ra::serve {
namespace {

using namespace std::chrono_literals;

TEST(BoundedQueue, FifoUpToItsCapacityThenRefuses) {
  BoundedQueue<int> q(3);
  EXPECT_TRUE(q.try_push(1));
  EXPECT_TRUE(q.try_push(2));
  EXPECT_TRUE(q.try_push(3));
  EXPECT_FALSE(q.try_push(4));
  EXPECT_EQ(q.size(), 3u);
  EXPECT_EQ(q.pop_until(Clock::now()), 1);
  EXPECT_TRUE(q.try_push(4));
  EXPECT_EQ(q.pop_until(Clock::now()), 2);
  EXPECT_EQ(q.pop_until(Clock::now()), 3);
  EXPECT_EQ(q.pop_until(Clock::now()), 4);
  EXPECT_EQ(q.pop_until(Clock::now()), std::nullopt);
}

TEST(BoundedQueue, PopWaitsUntilItsDeadlineOrAnItem) {
  BoundedQueue<int> q(1);
  const auto t0 = Clock::now();
  EXPECT_EQ(q.pop_until(t0 + 50ms), std::nullopt);
  EXPECT_GE(Clock::now() - t0, 50ms);
  std::thread producer([&] {
    std::this_thread::sleep_for(20ms);
    q.try_push(7);
  });
  EXPECT_EQ(q.pop_until(Clock::now() + 5s), 7);
  producer.join();
}

TEST(BoundedQueue, RemoveAndClose) {
  BoundedQueue<int> q(4);
  for (int i : {1, 2, 3}) q.try_push(i);
  EXPECT_TRUE(q.remove(2));
  EXPECT_FALSE(q.remove(2));
  EXPECT_EQ(q.close(), (std::vector<int>{1, 3}));
  EXPECT_FALSE(q.try_push(5));
  const auto t0 = Clock::now();
  EXPECT_EQ(q.pop_until(t0 + 5s), std::nullopt);  // closed: returns at once
  EXPECT_LT(Clock::now() - t0, 1s);
}

// Feeds `pieces` and returns what was released, and whether it stopped.
std::pair<std::string, bool> run(std::vector<std::string> stops, const std::vector<std::string>& pieces) {
  StopMatcher m(std::move(stops));
  std::string out;
  for (const std::string& p : pieces) {
    if (m.push(p, out)) return {out, true};
  }
  m.flush(out);
  return {out, false};
}

TEST(StopMatcher, StopsAtTheFirstMatchEvenAcrossPieces) {
  EXPECT_EQ(run({"END"}, {"abc", "dE", "N", "Dxyz"}), std::make_pair(std::string("abcd"), true));
  EXPECT_EQ(run({"END"}, {"abcENDxyz"}), std::make_pair(std::string("abc"), true));
  EXPECT_EQ(run({"xyz", "c"}, {"abcxyz"}), std::make_pair(std::string("ab"), true));  // the earliest wins
  EXPECT_EQ(run({"\n\n"}, {"a\n", "\nb"}), std::make_pair(std::string("a"), true));
}

TEST(StopMatcher, HoldsBackOnlyWhatMayStartAStopString) {
  StopMatcher m({"END", "xx"});
  std::string out;
  EXPECT_FALSE(m.push("abcE", out));
  EXPECT_EQ(out, "abc");  // "E" may start END
  EXPECT_FALSE(m.push("N", out));
  EXPECT_EQ(out, "abc");
  EXPECT_FALSE(m.push("Q", out));
  EXPECT_EQ(out, "abcENQ");  // it did not
  EXPECT_FALSE(m.push("x", out));
  EXPECT_EQ(out, "abcENQ");
  m.flush(out);
  EXPECT_EQ(out, "abcENQx");  // at the end, what was held is text
}

TEST(StopMatcher, NoStopsPassesEverything) {
  EXPECT_EQ(run({}, {"a", "b"}), std::make_pair(std::string("ab"), false));
  EXPECT_EQ(run({"zz"}, {"\xE2\x82\xAC", "z"}), std::make_pair(std::string("\xE2\x82\xAC" "z"), false));
}

TEST(Job, HandsTextAndTheEndToTheWaitingThread) {
  Job job({});
  std::string got, piece;
  std::thread decoder([&] {
    for (const char* p : {"a", "b", "c"}) {
      job.append(p);
      std::this_thread::sleep_for(5ms);
    }
    GenerationStats stats;
    stats.generated_tokens = 3;
    stats.finish = FinishReason::kLength;
    job.finish(stats);
    job.fail(unavailable("ignored: the job already ended"));
  });
  bool ended = false;
  const auto deadline = Clock::now() + 10s;
  while (!ended && Clock::now() < deadline) {
    ended = job.wait(piece, Clock::now() + 100ms);
    got += piece;
  }
  decoder.join();
  EXPECT_TRUE(ended);
  EXPECT_EQ(got, "abc");
  EXPECT_EQ(job.result().stats.generated_tokens, 3);
  EXPECT_FALSE(job.result().error);
}

TEST(Job, WaitReturnsAtItsDeadline) {
  Job job({});
  std::string piece;
  const auto t0 = Clock::now();
  EXPECT_FALSE(job.wait(piece, t0 + 30ms));
  EXPECT_GE(Clock::now() - t0, 30ms);
  job.cancel();
  EXPECT_TRUE(job.cancelled());
  job.fail(invalid_request("bad"));
  EXPECT_TRUE(job.wait(piece, Clock::now() + 10s));
  ASSERT_TRUE(job.result().error);
  EXPECT_EQ(job.result().error->status(), 400);
}

TEST(ContextRegistry, LongestRegisteredPrefix) {
  ContextRegistry r(2);
  const ContextRecord a = r.add({1, 2, 3}, 5.0);
  const ContextRecord b = r.add({1, 2, 3, 4, 5}, 7.0);
  EXPECT_NE(a.id, b.id);
  EXPECT_EQ(a.id.rfind("ctx-", 0), 0u);
  EXPECT_TRUE(r.full());
  EXPECT_THROW(r.add({9}, 1.0), ApiError);
  const std::vector<int32_t> p1 = {1, 2, 3, 4, 5, 6}, p2 = {1, 2, 3, 9}, p3 = {1, 2}, p4 = {7, 1, 2, 3};
  EXPECT_EQ(r.longest_prefix(p1), 5);
  EXPECT_EQ(r.longest_prefix(p2), 3);
  EXPECT_EQ(r.longest_prefix(p3), 0);
  EXPECT_EQ(r.longest_prefix(p4), 0);
  EXPECT_EQ(r.find(b.id)->tokens->size(), 5u);
  EXPECT_EQ(r.list().size(), 2u);
  EXPECT_TRUE(r.remove(b.id));
  EXPECT_FALSE(r.remove(b.id));
  EXPECT_FALSE(r.find(b.id));
  EXPECT_EQ(r.longest_prefix(p1), 3);
}

}  // namespace
}  // namespace ra::serve
