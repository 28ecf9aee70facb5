// RowArena: appended rows never move, are all there, and are readable while more arrive.

#include "common/address_reservation.h"
#include "common/error.h"
#include "common/half.h"
#include "cpu_retriever/row_arena.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <thread>
#include <vector>

namespace ra::retriever {
namespace {

float value(int64_t row, int64_t j) { return static_cast<float>(row * 1000 + j); }

std::vector<float> make_row(int64_t row, int64_t dim) {
  std::vector<float> r(dim);
  for (int64_t j = 0; j < dim; ++j) r[j] = value(row, j);
  return r;
}

TEST(RowArena, RowsStayWhereTheyWereAppended) {
  const int64_t dim = 128, rows = 5000;  // about 2.4 MiB: many commit steps
  RowArena arena(dim, rows);
  EXPECT_EQ(arena.size(), 0);
  EXPECT_EQ(arena.bytes(), 0u);
  const void* base = arena.data();
  const float* first = nullptr;
  for (int64_t i = 0; i < rows; ++i) {
    EXPECT_EQ(arena.append(make_row(i, dim).data()), i);
    if (i == 0) first = arena.row(0);
  }
  EXPECT_EQ(arena.data(), base);
  EXPECT_EQ(arena.row(0), first);
  EXPECT_EQ(arena.size(), rows);
  for (int64_t i = 0; i < rows; ++i) {
    ASSERT_EQ(std::memcmp(arena.row(i), make_row(i, dim).data(), dim * sizeof(float)), 0) << "row " << i;
  }
  const size_t used = static_cast<size_t>(rows * dim) * sizeof(float);
  EXPECT_GE(arena.bytes(), used);
  EXPECT_LT(arena.bytes(), used + (size_t{256} << 10));  // committed as it grows, not up front
}

TEST(RowArena, FullArenaAndBadSizesThrowByName) {
  RowArena arena(4, 3);
  const float row[4] = {1, 2, 3, 4};
  for (int i = 0; i < 3; ++i) arena.append(row);
  try {
    arena.append(row);
    FAIL() << "a fourth row fit in an arena of 3";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("full at 3 rows"), std::string::npos) << e.what();
  }
  EXPECT_EQ(arena.size(), 3);
  EXPECT_THROW(RowArena(0, 10), Error);
  EXPECT_THROW(RowArena(4, 0), Error);
}

// 16-bit arenas round each element to nearest even (the KV store's keys) and widen it back exactly;
// a block append is all or none.
TEST(RowArena, SixteenBitRowsAreRoundedOnceAndWidenedExactly) {
  const int64_t dim = 8;
  const std::vector<float> rows = {1.0f,      1.00390625f, 1.01171875f, -3.14159f, 65504.f, 1e-8f, 0.0f, -0.0f,
                                   100000.0f, 0.333333f,   -2.5f,       7.0f,      1e30f,   -1e-30f, 2.0f, 3.0f};
  for (KvDtype dtype : {KvDtype::kBF16, KvDtype::kF16}) {
    RowArena arena(dtype, dim, 3);
    EXPECT_EQ(arena.row_bytes(), dim * sizeof(uint16_t));
    EXPECT_EQ(arena.append(rows.data(), 2), 0);
    std::vector<float> out(dim);
    for (int64_t i = 0; i < 2; ++i) {
      arena.widen(i, out.data());
      for (int64_t j = 0; j < dim; ++j) {
        const float x = rows[i * dim + j];
        const float want = dtype == KvDtype::kBF16 ? to_float(to_bf16(x)) : to_float(to_f16(x));
        EXPECT_EQ(std::memcmp(&out[j], &want, sizeof(float)), 0) << "row " << i << " element " << j << ": " << out[j]
                                                                  << " for " << x;
      }
    }
    EXPECT_THROW(arena.append(rows.data(), 2), Error);  // 2 more do not fit in 3: none is added
    EXPECT_EQ(arena.size(), 2);
  }
  EXPECT_EQ(to_float(to_bf16(1.00390625f)), 1.0f);  // the tie rounds to even: the test data has one
}

// One writer, one reader: every row the reader sees counted in size() holds its full contents. The
// writer starts once the reader runs, and the reader's checks are counted so a run in which it never got
// scheduled (seen under ctest -j8 on 16 cores: 20,000 appends take about 10 ms) cannot pass silently.
TEST(RowArena, ReadersSeeEveryPublishedRowWhole) {
  const int64_t dim = 64, rows = 20000;
  RowArena arena(dim, rows);
  std::atomic<bool> started{false}, done{false};
  std::atomic<int64_t> bad{0}, checks{0}, concurrent{0};
  std::thread reader([&] {
    started.store(true);
    while (!done.load()) {
      const int64_t n = arena.size();
      if (n == 0) continue;
      const int64_t i = n - 1;  // the newest row: the one most likely to be torn
      for (int64_t j = 0; j < dim; ++j) {
        if (arena.row(i)[j] != value(i, j)) {
          bad.fetch_add(1);
          break;
        }
      }
      checks.fetch_add(1);
      if (n < rows) concurrent.fetch_add(1);  // read while the writer still had rows to append
    }
  });
  while (!started.load()) std::this_thread::yield();
  for (int64_t i = 0; i < rows; ++i) arena.append(make_row(i, dim).data());
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (checks.load() == 0 && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
  done.store(true);
  reader.join();
  EXPECT_EQ(bad.load(), 0) << "of " << checks.load();
  EXPECT_GT(checks.load(), 0);
  std::printf("%lld checks, %lld of them while rows were being appended\n", static_cast<long long>(checks.load()),
              static_cast<long long>(concurrent.load()));
}

// A large arena starts on a 2 MiB boundary and grows in whole 2 MiB steps, so transparent huge pages
// can back it (common/address_reservation.h); a small one grows in 256 KiB steps. Rows are the same.
TEST(RowArena, LargeArenasAreLaidOutForHugePages) {
  if (!huge_pages_enabled()) GTEST_SKIP() << "RA_HUGE_PAGES=0 in the environment";
  const int64_t dim = 128;
  RowArena large(KvDtype::kBF16, dim, 1 << 16);  // 16 MiB of address space
  EXPECT_EQ(reinterpret_cast<uintptr_t>(large.data()) % AddressReservation::kHugePage, 0u);
  for (int64_t i = 0; i < 3; ++i) large.append(make_row(i, dim).data());
  EXPECT_EQ(large.bytes(), AddressReservation::kHugePage);
  for (int64_t i = 3; i < 9000; ++i) large.append(make_row(i, dim).data());  // 2.2 MiB of rows
  EXPECT_EQ(large.bytes(), 2 * AddressReservation::kHugePage);
  std::vector<float> row(dim);
  large.widen(8999, row.data());
  EXPECT_EQ(row[5], to_float(to_bf16(value(8999, 5))));

  RowArena small(KvDtype::kBF16, dim, 1000);  // 250 KiB: 4 KiB pages
  small.append(make_row(0, dim).data());
  EXPECT_GE(small.bytes(), 1000u * 256);
  EXPECT_LT(small.bytes(), AddressReservation::kHugePage);
}

}  // namespace
}  // namespace ra::retriever
