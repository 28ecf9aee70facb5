// BuildQueue (cpu_retriever/build_queue.h): the retriever's builds off its request loop.
#include "cpu_retriever/build_queue.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <mutex>
#include <thread>
#include <chrono>
#include <stdexcept>
#include <string>
#include <vector>

namespace ra::retriever {
namespace {

using namespace std::chrono_literals;

std::vector<std::byte> payload_of(uint32_t layer) {
  std::vector<std::byte> p(sizeof(layer));
  std::memcpy(p.data(), &layer, sizeof(layer));
  return p;
}

uint32_t layer_of(std::span<const std::byte> p) {
  uint32_t layer = 0;
  std::memcpy(&layer, p.data(), sizeof(layer));
  return layer;
}

std::vector<FinishedBuild> wait_for(BuildQueue& q, size_t count) {
  std::vector<FinishedBuild> done;
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (done.size() < count && std::chrono::steady_clock::now() < deadline) {
    q.wait_for_progress(1ms);
    q.take_done(done);
  }
  return done;
}

// Waits until take_done rethrows a build's failure; returns its message ("" when none came in 10 s).
std::string wait_for_failure(BuildQueue& q, std::vector<FinishedBuild>& done) {
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (std::chrono::steady_clock::now() < deadline) {
    q.wait_for_progress(1ms);
    try {
      q.take_done(done);
    } catch (const std::runtime_error& e) {
      return e.what();
    }
  }
  return "";
}

TEST(BuildQueue, BuildsInSubmissionOrderOffTheCallersThread) {
  const auto caller = std::this_thread::get_id();
  std::atomic<bool> on_other_thread{true};
  BuildQueue q([&](std::span<const std::byte> p) {
    if (std::this_thread::get_id() == caller) on_other_thread = false;
    std::this_thread::sleep_for(2ms);
    return transport::BuildDonePayload{layer_of(p), 0, 0.0};
  });
  for (uint32_t l = 0; l < 5; ++l) q.submit(100 + l, l, payload_of(l));
  const std::vector<FinishedBuild> done = wait_for(q, 5);
  ASSERT_EQ(done.size(), 5u);
  for (uint32_t l = 0; l < 5; ++l) {
    EXPECT_EQ(done[l].seq, 100 + l);
    EXPECT_EQ(done[l].done.layer, l);
  }
  EXPECT_TRUE(on_other_thread);
  EXPECT_TRUE(q.idle());
}

TEST(BuildQueue, AFailedBuildIsRethrownAndLaterOnesAreDropped) {
  std::atomic<int> built{0};
  BuildQueue q([&](std::span<const std::byte> p) {
    if (layer_of(p) == 1) throw std::runtime_error("layer 1: malformed kBuild");
    ++built;
    return transport::BuildDonePayload{layer_of(p), 0, 0.0};
  });
  for (uint32_t l = 0; l < 4; ++l) q.submit(l, l, payload_of(l));
  std::vector<FinishedBuild> done;
  EXPECT_EQ(wait_for_failure(q, done), "layer 1: malformed kBuild");
  EXPECT_TRUE(q.idle());
  EXPECT_EQ(built.load(), 1);  // layer 0 only: 2 and 3 never ran
}

// The retriever's loop blocks on its channel once take_done says idle: by then every result must have
// been handed out, or a build that ends in between is stranded (it hung a worker waiting for kBuildDone).
TEST(BuildQueue, IdleFromTakeDoneMeansEveryResultWasTaken) {
  BuildQueue q([](std::span<const std::byte> p) { return transport::BuildDonePayload{layer_of(p), 0, 0.0}; });
  std::vector<FinishedBuild> done;
  for (uint32_t l = 0; l < 2000; ++l) {
    q.submit(l, l, payload_of(l));
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (!q.take_done(done)) {
      ASSERT_LT(std::chrono::steady_clock::now(), deadline);
    }
    ASSERT_EQ(done.size(), l + 1);
    EXPECT_EQ(done.back().done.layer, l);
  }
}

TEST(BuildQueue, ASubmissionAfterAFailureIsDropped) {
  std::atomic<int> built{0};
  BuildQueue q([&](std::span<const std::byte> p) {
    if (layer_of(p) == 0) throw std::runtime_error("layer 0: malformed kBuild");
    ++built;
    return transport::BuildDonePayload{layer_of(p), 0, 0.0};
  });
  q.submit(0, 0, payload_of(0));
  std::vector<FinishedBuild> done;
  ASSERT_EQ(wait_for_failure(q, done), "layer 0: malformed kBuild");
  q.submit(1, 1, payload_of(1));  // as the loop would, had layer 1's kBuild arrived meanwhile
  EXPECT_TRUE(q.idle());
  EXPECT_THROW(q.take_done(done), std::runtime_error);
  EXPECT_TRUE(done.empty());
  EXPECT_EQ(built.load(), 0);
}

// Several workers: builds of different layers overlap, each worker runs its start hook once, and the
// results come out in submission order although the later ones finish first.
TEST(BuildQueue, WorkersBuildLayersAtOnceAndReleaseInOrder) {
  std::atomic<int> running{0}, most{0}, started{0};
  BuildQueue q(
      [&](std::span<const std::byte> p) {
        const int now = ++running;
        for (int m = most.load(); now > m && !most.compare_exchange_weak(m, now);) {
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(40 - 10 * static_cast<int>(layer_of(p) % 4)));
        --running;
        return transport::BuildDonePayload{layer_of(p), 0, 0.0};
      },
      3, [&] { ++started; });
  for (uint32_t l = 0; l < 8; ++l) q.submit(100 + l, l, payload_of(l));
  const std::vector<FinishedBuild> done = wait_for(q, 8);
  ASSERT_EQ(done.size(), 8u);
  for (uint32_t l = 0; l < 8; ++l) EXPECT_EQ(done[l].seq, 100 + l);
  EXPECT_GE(most.load(), 2);
  EXPECT_LE(most.load(), 3);
  EXPECT_EQ(started.load(), 3);
  EXPECT_TRUE(q.idle());
}

// Two builds of one key (a layer prefilled again) never run at once, and run in submission order.
TEST(BuildQueue, BuildsOfOneKeyRunOneAtATimeInOrder) {
  std::mutex mu;
  std::vector<uint32_t> order;
  std::atomic<int> in_key0{0}, overlap{0};
  BuildQueue q(
      [&](std::span<const std::byte> p) {
        const uint32_t id = layer_of(p);
        if (id % 2 == 0) {
          if (++in_key0 > 1) ++overlap;
          {
            std::lock_guard lock(mu);
            order.push_back(id);
          }
          std::this_thread::sleep_for(5ms);
          --in_key0;
        }
        return transport::BuildDonePayload{id, 0, 0.0};
      },
      4);
  for (uint32_t i = 0; i < 12; ++i) q.submit(i, i % 2 == 0 ? 0 : 1 + i, payload_of(i));  // even ids: key 0
  ASSERT_EQ(wait_for(q, 12).size(), 12u);
  EXPECT_EQ(overlap.load(), 0);
  EXPECT_EQ(order, (std::vector<uint32_t>{0, 2, 4, 6, 8, 10}));
}

TEST(BuildQueue, DestructionWithQueuedBuildsDoesNotHang) {
  std::atomic<int> built{0};
  {
    BuildQueue q([&](std::span<const std::byte> p) {
      std::this_thread::sleep_for(5ms);
      ++built;
      return transport::BuildDonePayload{layer_of(p), 0, 0.0};
    });
    for (uint32_t l = 0; l < 50; ++l) q.submit(l, l, payload_of(l));
  }
  EXPECT_LT(built.load(), 50);
}

}  // namespace
}  // namespace ra::retriever
