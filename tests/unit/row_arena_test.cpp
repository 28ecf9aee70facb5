// RowArena: appended rows never move, are all there, and are readable while more arrive; rows arrive as
// float32 or in the form they travelled in (kv_rows.h: bf16, int8), and fill the arena exactly as their
// float32 values would, or are refused by name with nothing appended.

#include "common/address_reservation.h"
#include "common/error.h"
#include "common/half.h"
#include "cpu_retriever/row_arena.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "common/q8_row.h"

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

// n rows of dim values from N(0, 3), with every 7th row a few exact ties (x / scale = k + 1/2 for the
// int8 rule's power-of-two scale) and row 3 all zeros.
std::vector<float> wire_test_rows(int64_t n, int64_t dim, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0.0f, 3.0f);
  std::vector<float> x(static_cast<size_t>(n * dim));
  for (float& v : x) v = g(rng);
  for (int64_t r = 0; r < n; r += 7) {
    float* row = x.data() + r * dim;
    row[0] = 127.0f * 0.25f;  // peak: scale 0.25
    for (int64_t j = 1; j < dim; ++j) row[j] = (static_cast<float>(j % 9) - 4.0f + 0.5f) * 0.25f;  // ties
  }
  if (n > 3) std::fill_n(x.data() + 3 * dim, dim, 0.0f);
  return x;
}

// The arena's bytes of its first n rows.
std::vector<std::byte> arena_bytes(const RowArena& a) {
  const auto* p = static_cast<const std::byte*>(a.data());
  return {p, p + static_cast<size_t>(a.size()) * a.row_bytes()};
}

// bf16 rows (a bf16 model's KV on the wire) fill a bf16 arena bit for bit, and a float32 or int8 arena
// exactly as their float32 values do; int8 rows fill an int8 arena exactly as the values they were coded
// from do (the shared rule, common/q8_row.h).
TEST(RowArena, WireRowsFillTheArenaAsTheirFloatValues) {
  const int64_t dim = 36, n = 300;  // dim + 4 = 40: rows at every alignment of 8 bytes
  const std::vector<float> x = wire_test_rows(n, dim, 5);
  std::vector<uint16_t> bits(x.size());
  std::vector<float> widened(x.size());
  for (size_t e = 0; e < x.size(); ++e) {
    bits[e] = to_bf16(x[e]).bits;
    widened[e] = to_float(bf16{bits[e]});
  }
  for (const KvDtype dtype : {KvDtype::kBF16, KvDtype::kF32, KvDtype::kQ8}) {
    RowArena from_bf16(dtype, dim, n), from_floats(dtype, dim, n);
    EXPECT_EQ(from_bf16.append(KvRows(KvDtype::kBF16, bits.data()), n), 0);
    from_floats.append(widened.data(), n);
    EXPECT_EQ(arena_bytes(from_bf16), arena_bytes(from_floats)) << kv_dtype_name(dtype);
  }
  std::vector<std::byte> coded(static_cast<size_t>(n) * (dim + kQ8ScaleBytes));
  EXPECT_LT(encode_wire_rows(WireRows::kQ8, x.data(), n, dim, coded.data()), 0);
  RowArena from_q8(KvDtype::kQ8, dim, n), from_floats(KvDtype::kQ8, dim, n);
  from_q8.append(KvRows(KvDtype::kQ8, coded.data()), n);
  from_floats.append(x.data(), n);
  EXPECT_EQ(arena_bytes(from_q8), coded);
  EXPECT_EQ(arena_bytes(from_floats), coded);
  float zeros[dim];
  from_q8.widen(3, zeros);
  for (int64_t j = 0; j < dim; ++j) EXPECT_EQ(zeros[j], 0.0f);
  EXPECT_EQ(q8_row_scale(static_cast<const int8_t*>(from_q8.row_data(3)), dim), 0.0f);
}

// Rows the arena cannot take are refused by name before anything is appended: int8 rows into a 16/32-bit
// arena (their rounding cannot be undone), bf16 into f16, an int8 row whose scale no row has (inf, NaN,
// negative), and bf16 inf or NaN into an int8 arena.
TEST(RowArena, WireRowsItCannotTakeAreRefusedWithNothingAppended) {
  const int64_t dim = 8;
  const std::vector<float> x = wire_test_rows(4, dim, 6);
  std::vector<std::byte> coded(4 * (dim + kQ8ScaleBytes));
  ASSERT_LT(encode_wire_rows(WireRows::kQ8, x.data(), 4, dim, coded.data()), 0);
  std::vector<uint16_t> bits(x.size());
  for (size_t e = 0; e < x.size(); ++e) bits[e] = to_bf16(x[e]).bits;
  auto error = [](RowArena& a, KvRows rows, int64_t n) -> std::string {
    const int64_t before = a.size();
    try {
      a.append(rows, n);
    } catch (const Error& e) {
      EXPECT_EQ(a.size(), before) << e.what();
      return e.what();
    }
    return "no error";
  };
  for (const KvDtype dtype : {KvDtype::kBF16, KvDtype::kF16, KvDtype::kF32}) {
    RowArena a(dtype, dim, 10);
    a.append(x.data(), 1);
    EXPECT_EQ(error(a, KvRows(KvDtype::kQ8, coded.data()), 4),
              "arena rows 1 to 4: int8 rows cannot go into a " + std::string(kv_dtype_name(dtype)) +
                  " store (int8 rows only into int8, 16-bit rows only into their own dtype, float32 or int8)");
  }
  RowArena f16(KvDtype::kF16, dim, 10);
  EXPECT_NE(error(f16, KvRows(KvDtype::kBF16, bits.data()), 4).find("bf16 rows cannot go into a f16 store"),
            std::string::npos);

  RowArena q8(KvDtype::kQ8, dim, 10);
  q8.append(KvRows(KvDtype::kQ8, coded.data()), 2);
  for (const float bad : {std::numeric_limits<float>::infinity(), std::numeric_limits<float>::quiet_NaN(), -1.0f}) {
    std::vector<std::byte> broken = coded;
    std::memcpy(broken.data() + 3 * (dim + kQ8ScaleBytes) + dim, &bad, sizeof bad);  // row 3's scale
    EXPECT_NE(error(q8, KvRows(KvDtype::kQ8, broken.data()), 4).find("arena row 5: its int8 scale is"),
              std::string::npos)
        << bad;
  }
  std::vector<uint16_t> inf_bits = bits;
  inf_bits[2 * dim + 5] = 0x7f80;  // +inf in row 2
  EXPECT_NE(error(q8, KvRows(KvDtype::kBF16, inf_bits.data()), 4).find("arena row 4: element 5 is inf"),
            std::string::npos);
  EXPECT_EQ(q8.size(), 2);
}

}  // namespace
}  // namespace ra::retriever
