// int8 K and V on the retrievers (issue 22 item 1; cpu_retriever/kv_int8.h, dot_q8.h): the quantisation
// rule's error bound, zero rows and refused non-finite input; the int8 scorer against a double reference
// and every vector path against the portable loop, bit for bit; a flat shard over int8 K/V against a
// float32 reference on the dequantised rows (the same ids; lse and o within 1e-5), before and after
// appends; graph shards over int8 keys searching and taking appends; memory per token and RSS.

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <iostream>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "common/error.h"
#include "common/partial_state.h"
#include "common/process_usage.h"
#include "cpu_retriever/dot.h"
#include "cpu_retriever/flat_index.h"
#include "cpu_retriever/graph_index.h"
#include "cpu_retriever/head_shard.h"
#include "cpu_retriever/kv_int8.h"
#include "cpu_retriever/kv_store.h"
#include "cpu_retriever/maintenance_pool.h"
#include "tests/support/sanitizer.h"

namespace ra::retriever {
namespace {

uint32_t bits(float x) { return std::bit_cast<uint32_t>(x); }

// One int8 row (codes, then the scale) of x: [dim].
std::vector<int8_t> q8_row(const std::vector<float>& x) {
  const auto dim = static_cast<int64_t>(x.size());
  std::vector<int8_t> row(static_cast<size_t>(dim) + kQ8ScaleBytes);
  EXPECT_LT(quantise_q8_row(x.data(), dim, row.data()), 0);
  return row;
}

// Rows with a spread of magnitudes, as real keys have: a few outlier channels, tiny ones, exact zeros.
std::vector<float> random_row(int64_t dim, std::mt19937_64& rng) {
  std::normal_distribution<float> g(0.f, 1.f);
  std::uniform_real_distribution<float> u(0.f, 1.f);
  std::vector<float> x(static_cast<size_t>(dim));
  const float magnitude = std::exp2(std::floor(u(rng) * 40.f) - 20.f);  // 2^-20 .. 2^19
  for (int64_t j = 0; j < dim; ++j) {
    const float r = u(rng);
    x[j] = magnitude * g(rng) * (r < 0.05f ? 30.f : r < 0.1f ? 1e-4f : 1.f);
    if (r > 0.97f) x[j] = 0.f;
  }
  return x;
}

// ---- The rule ---------------------------------------------------------------------------------

// |x - x̂| <= scale / 2 per element, up to the float32 roundings of x / scale and scale · q (the bound
// kv_int8.h states: scale · (0.5 + 2^-15)); codes in [-127, 127] with the peak at ±127; scale = max / 127.
TEST(KvInt8, DequantisedRowsAreWithinHalfAStepOfTheInput) {
  std::mt19937_64 rng(1);
  for (const int64_t dim : {1, 2, 7, 16, 33, 64, 128, 130}) {
    for (int trial = 0; trial < 200; ++trial) {
      const std::vector<float> x = random_row(dim, rng);
      const std::vector<int8_t> row = q8_row(x);
      const float scale = q8_row_scale(row.data(), dim);
      float peak = 0.f;
      for (const float v : x) peak = std::max(peak, std::fabs(v));
      ASSERT_EQ(bits(scale), bits(peak / 127.0f));
      std::vector<float> back(static_cast<size_t>(dim));
      dequantise_q8_row(row.data(), dim, back.data());
      bool peak_coded = peak == 0.f;
      for (int64_t j = 0; j < dim; ++j) {
        ASSERT_GE(row[j], -127);
        ASSERT_LE(std::fabs(x[j] - back[j]), scale * (0.5f + 0x1p-15f))
            << "dim " << dim << " element " << j << ": " << x[j] << " -> " << int{row[j]} << " * " << scale;
        ASSERT_EQ(bits(back[j]), bits(scale * static_cast<float>(row[j])));
        peak_coded |= std::fabs(x[j]) == peak && std::abs(int{row[j]}) == 127;
      }
      ASSERT_TRUE(peak_coded) << "dim " << dim;
      // widen_row / widen_rows are the same dequantisation.
      std::vector<float> widened(static_cast<size_t>(dim));
      widen_row(KvDtype::kQ8, row.data(), dim, widened.data());
      ASSERT_EQ(widened, back);
    }
  }
}

// Multiples of an exactly representable scale come back bit for bit; halves round to even.
TEST(KvInt8, MultiplesOfTheScaleRoundTripExactlyAndHalvesRoundToEven) {
  std::mt19937_64 rng(2);
  std::uniform_int_distribution<int> code(-127, 127);
  for (const float scale : {1.0f, 0x1p-7f, 0x1p-20f, 0x1p10f}) {
    std::vector<float> x(40);
    for (float& v : x) v = scale * static_cast<float>(code(rng));
    x[7] = -127.f * scale;  // the peak sets the scale: 127 · scale / 127 = scale exactly
    const std::vector<int8_t> row = q8_row(x);
    ASSERT_EQ(q8_row_scale(row.data(), 40), scale);
    std::vector<float> back(40);
    dequantise_q8_row(row.data(), 40, back.data());
    for (size_t j = 0; j < x.size(); ++j) ASSERT_EQ(bits(back[j]), bits(x[j])) << "scale " << scale << " [" << j << "]";
  }
  // scale 1 (peak 127): x / scale = x, so k + 0.5 rounds to the even neighbour.
  const std::vector<float> halves = {127.f, 0.5f, 1.5f, 2.5f, -0.5f, -1.5f, -2.5f, 126.5f, -126.5f, 0.49f};
  const std::vector<int8_t> row = q8_row(halves);
  const std::vector<int> want = {127, 0, 2, 2, 0, -2, -2, 126, -126, 0};
  for (size_t j = 0; j < want.size(); ++j) EXPECT_EQ(int{row[j]}, want[j]) << halves[j];
}

TEST(KvInt8, ZeroRowsHaveScaleZeroAndCodesZero) {
  for (const float zero : {0.0f, -0.0f, 1e-45f}) {  // the last: max / 127 underflows to 0
    const std::vector<float> x(24, zero);
    const std::vector<int8_t> row = q8_row(x);
    EXPECT_EQ(q8_row_scale(row.data(), 24), 0.0f);
    for (int j = 0; j < 24; ++j) EXPECT_EQ(row[j], 0);
    std::vector<float> q(24, 3.0f);
    EXPECT_EQ(dot_row<Q8Elem>(q.data(), row.data(), 24), 0.0f);
    std::vector<float> back(24, 1.f);
    dequantise_q8_row(row.data(), 24, back.data());
    for (const float v : back) EXPECT_EQ(v, 0.0f);
  }
}

// inf or NaN has no int8 code: the rule reports the element, and every writer refuses the row with an
// ra::Error naming it, leaving what it holds unchanged (keys and values still aligned).
TEST(KvInt8, NonFiniteInputIsRefusedNamingTheRow) {
  constexpr int64_t kDim = 8;
  std::vector<float> x(kDim, 1.f);
  std::vector<int8_t> row(kDim + kQ8ScaleBytes);
  x[5] = std::numeric_limits<float>::infinity();
  EXPECT_EQ(quantise_q8_row(x.data(), kDim, row.data()), 5);
  x[5] = 1.f;
  x[2] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(quantise_q8_row(x.data(), kDim, row.data()), 2);

  std::vector<float> rows(3 * kDim, 0.25f), good(3 * kDim, 0.5f);
  rows[2 * kDim + 6] = -std::numeric_limits<float>::infinity();
  RowArena arena(KvDtype::kQ8, kDim, 16);
  arena.append(good.data(), 1);
  try {
    arena.append(rows.data(), 3);
    FAIL() << "appended an infinite value";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("row 3: element 6 is -inf"), std::string::npos) << e.what();
  }
  EXPECT_EQ(arena.size(), 1);

  for (const KvDtypes dtypes : {KvDtypes(KvDtype::kQ8), KvDtypes(KvDtype::kBF16, KvDtype::kQ8)}) {
    KvStore store(kDim, dtypes, 16);
    store.append(good.data(), good.data(), 2);
    try {
      store.append(good.data(), rows.data(), 3);  // the values' row 2 (store row 4)
      FAIL() << "appended an infinite value";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("value row 4: element 6 is -inf"), std::string::npos) << e.what();
    }
    EXPECT_EQ(store.size(), 2);
    EXPECT_EQ(store.keys()->size(), 2);
    EXPECT_EQ(store.values().size(), 2);
  }
  // bf16 keeps taking them as they are.
  KvStore bf16(kDim, KvDtype::kBF16, 16);
  bf16.append(rows.data(), rows.data(), 3);
  EXPECT_EQ(bf16.size(), 3);

  ShardIndexParams p;
  p.append_capacity = 4;
  HeadShard shard(kDim, KvDtype::kQ8, good.data(), good.data(), 2, 1, nullptr, 0, p);
  EXPECT_THROW(shard.append(rows.data() + 2 * kDim, good.data()), Error);
  EXPECT_EQ(shard.size(), 2);
  EXPECT_THROW(HeadShard(kDim, KvDtype::kQ8, rows.data(), rows.data(), 3, 1, nullptr, 0, p), Error);
}

TEST(KvInt8, DtypeNamesParseBack) {
  for (const KvDtypes d : {KvDtypes(KvDtype::kBF16), KvDtypes(KvDtype::kF16), KvDtypes(KvDtype::kF32),
                           KvDtypes(KvDtype::kQ8), KvDtypes(KvDtype::kQ8, KvDtype::kBF16),
                           KvDtypes(KvDtype::kBF16, KvDtype::kQ8), KvDtypes(KvDtype::kF16, KvDtype::kQ8)}) {
    EXPECT_EQ(parse_kv_dtypes(kv_dtypes_name(d)), d) << kv_dtypes_name(d);
  }
  EXPECT_EQ(kv_dtypes_name(KvDtypes(KvDtype::kQ8, KvDtype::kBF16)), "int8/bf16");
  EXPECT_EQ(parse_kv_dtypes("int8"), KvDtypes(KvDtype::kQ8, KvDtype::kQ8));
  EXPECT_THROW(parse_kv_dtypes("i8"), Error);
  EXPECT_THROW(parse_kv_dtypes("int8/"), Error);
  EXPECT_EQ(kv_row_bytes(KvDtype::kQ8, 128), 132u);
  EXPECT_EQ(kv_row_bytes(KvDtype::kBF16, 128), 256u);
}

// ---- The scorer -------------------------------------------------------------------------------

// The vector paths this CPU has (dot_q8.h), besides the portable loop.
std::vector<Q8Simd> simd_paths() {
  std::vector<Q8Simd> out;
  if (cpu_has_simd_dot()) out.push_back(Q8Simd::kAvx2);
  __builtin_cpu_init();
  if (cpu_has_simd_dot() && __builtin_cpu_supports("avx512f")) out.push_back(Q8Simd::kAvx512);
  return out;
}

// q · k̂ = scale · Σ q_j · code_j: the portable loop is within its float32 summation bound of the double
// reference, (dim / 16 + 8) · 2^-24 · scale · Σ |q_j · code_j|; every vector path (AVX2, AVX-512F, where
// the CPU has them), single and four rows at once, and the dispatched dot_row give the portable bits.
TEST(KvInt8, ScorerEqualsTheDoubleReferenceAndEveryPathThePortableBits) {
  const std::vector<Q8Simd> paths = simd_paths();
  std::cout << "[ info ] int8 paths checked against the portable loop:"
            << (paths.empty() ? " none (no AVX2)" : "")
            << (std::find(paths.begin(), paths.end(), Q8Simd::kAvx2) != paths.end() ? " avx2" : "")
            << (std::find(paths.begin(), paths.end(), Q8Simd::kAvx512) != paths.end() ? " avx512f" : "")
            << "; dispatch uses level " << static_cast<int>(q8_simd_level()) << "\n";
  std::mt19937_64 rng(3);
  std::normal_distribution<float> g(0.f, 2.f);
  for (int64_t dim = 1; dim <= 160; ++dim) {
    for (int trial = 0; trial < 4; ++trial) {
      std::vector<float> q(static_cast<size_t>(dim));
      for (float& v : q) v = g(rng);
      std::vector<std::vector<int8_t>> rows;
      for (int r = 0; r < 4; ++r) rows.push_back(q8_row(random_row(dim, rng)));
      if (trial == 1) {  // the extreme codes, and a zero row
        std::vector<float> x(static_cast<size_t>(dim));
        for (int64_t j = 0; j < dim; ++j) x[j] = j % 2 == 0 ? 3.f : -3.f;
        rows[1] = q8_row(x);
        rows[2] = q8_row(std::vector<float>(static_cast<size_t>(dim), 0.f));
      }
      const int8_t* ptrs[4] = {rows[0].data(), rows[1].data(), rows[2].data(), rows[3].data()};
      const std::string where = "dim " + std::to_string(dim) + " trial " + std::to_string(trial);
      float portable[4];
      for (int r = 0; r < 4; ++r) {
        portable[r] = dot_q8_portable(q.data(), ptrs[r], dim);
        const float scale = q8_row_scale(ptrs[r], dim);
        double ref = 0, magnitude = 0;
        for (int64_t j = 0; j < dim; ++j) {
          ref += static_cast<double>(q[j]) * ptrs[r][j];
          magnitude += std::fabs(static_cast<double>(q[j]) * ptrs[r][j]);
        }
        ref *= scale;
        const double bound = (static_cast<double>(dim) / 16 + 8) * 0x1p-24 * scale * magnitude;
        ASSERT_LE(std::fabs(portable[r] - ref), bound) << where << " row " << r;
        ASSERT_EQ(bits(dot_row<Q8Elem>(q.data(), ptrs[r], dim)), bits(portable[r])) << where << " row " << r;
        ASSERT_EQ(bits(dot_row_portable<Q8Elem>(q.data(), ptrs[r], dim)), bits(portable[r])) << where;
      }
      float out[4];
      dot_row_x4<Q8Elem>(q.data(), ptrs, dim, out);
      for (int r = 0; r < 4; ++r) ASSERT_EQ(bits(out[r]), bits(portable[r])) << where << " dispatched x4 row " << r;
      for (const Q8Simd path : paths) {
        const bool wide = path == Q8Simd::kAvx512;
        const char* name = wide ? "avx512f" : "avx2";
        if (wide) {
          dot_q8_x4_avx512(q.data(), ptrs, dim, out);
        } else {
          dot_q8_x4_avx2(q.data(), ptrs, dim, out);
        }
        for (int r = 0; r < 4; ++r) {
          const float one = wide ? dot_q8_avx512(q.data(), ptrs[r], dim) : dot_q8_avx2(q.data(), ptrs[r], dim);
          ASSERT_EQ(bits(one), bits(portable[r])) << name << " " << where << " row " << r;
          ASSERT_EQ(bits(out[r]), bits(portable[r])) << name << " x4 " << where << " row " << r;
        }
      }
      // Two stored rows: the integer sum is exact, so only the scales' product rounds.
      double ref = 0;
      for (int64_t j = 0; j < dim; ++j) ref += static_cast<double>(ptrs[0][j]) * ptrs[3][j];
      ref *= static_cast<double>(q8_row_scale(ptrs[0], dim)) * q8_row_scale(ptrs[3], dim);
      ASSERT_NEAR(dot_rows<Q8Elem>(ptrs[0], ptrs[3], dim), ref, 4e-7 * std::fabs(ref) + 1e-30) << where;
    }
  }
}

// ---- Shards -----------------------------------------------------------------------------------

struct Data {
  int64_t n, dim;
  std::vector<float> keys, values, train, test;
};

// Keys around +m, queries around m plus a shift of their own: keys of several magnitudes.
Data make_data(int64_t n, int64_t dim, int64_t n_train, int64_t n_test, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> g(0.f, 1.f);
  std::vector<float> m(static_cast<size_t>(dim)), w(static_cast<size_t>(dim));
  for (int64_t j = 0; j < dim; ++j) {
    m[j] = g(rng);
    w[j] = 0.5f * g(rng);
  }
  auto rows = [&](int64_t count, float mean, bool query) {
    std::vector<float> out(static_cast<size_t>(count * dim));
    for (int64_t i = 0; i < count; ++i) {
      const float spread = query ? 1.f : 0.5f + static_cast<float>(i % 7) * 0.25f;
      for (int64_t j = 0; j < dim; ++j) out[i * dim + j] = mean * m[j] + (query ? w[j] : 0.f) + spread * g(rng);
    }
    return out;
  };
  return Data{n, dim, rows(n, 1.f, false), rows(n, 0.f, false), rows(n_train, 1.f, true), rows(n_test, 1.f, true)};
}

// rows: [n][dim] float32 -> the rows a store of dtype holds, widened (int8: dequantised).
std::vector<float> stored(const float* rows, int64_t n, int64_t dim, KvDtype dtype) {
  RowArena arena(dtype, dim, std::max<int64_t>(n, 1));
  arena.append(rows, n);
  return arena.widened(n);
}

// A flat shard over int8 K (and int8 or bf16 V) gives the exact top-k and the partial attention of a
// float32 reference over the dequantised rows: the same ids, lse and o within 1e-5; also once evicted
// tokens have joined (the flat tail of search_attend).
TEST(KvInt8, FlatShardMatchesAFloat32ReferenceOnTheDequantisedRows) {
  const int64_t dim = 64, n = 3000, extra = 400, k = 40;
  const Data d = make_data(n + extra, dim, 0, 12, 5);
  const float scale = 1.0f / std::sqrt(static_cast<float>(dim));
  for (const KvDtypes dtypes : {KvDtypes(KvDtype::kQ8), KvDtypes(KvDtype::kQ8, KvDtype::kBF16)}) {
    ShardIndexParams p;
    p.kind = IndexKind::kFlat;
    p.append_capacity = extra;
    HeadShard shard(dim, dtypes, d.keys.data(), d.values.data(), n, 1, nullptr, 0, p);
    const std::vector<float> keys = stored(d.keys.data(), n + extra, dim, dtypes.key);
    const std::vector<float> values = stored(d.values.data(), n + extra, dim, dtypes.value);
    for (const int64_t rows : {n, n + extra}) {
      while (shard.size() < rows) {
        const int64_t i = shard.size();
        shard.append(d.keys.data() + i * dim, d.values.data() + i * dim);
      }
      ShardScratch s;
      std::vector<float> o(static_cast<size_t>(dim)), want(static_cast<size_t>(dim));
      std::vector<int64_t> ids(k);
      std::vector<float> scores(k), weights(static_cast<size_t>(rows));
      for (int64_t t = 0; t < 12; ++t) {
        const float* q = d.test.data() + t * dim;
        const SearchParams sp{.k = static_cast<int>(k)};
        const float lse = shard.search_attend(0, q, sp, scale, s, o.data(), nullptr);
        ASSERT_EQ(exact_top_k(q, keys.data(), rows, dim, static_cast<int>(k), ids.data(), scores.data()), k);
        const std::string where = kv_dtypes_name(dtypes) + " rows " + std::to_string(rows) + " query " +
                                  std::to_string(t);
        ASSERT_TRUE(std::equal(ids.begin(), ids.end(), s.merged_ids.begin())) << where;
        std::vector<float> sk, sv;
        for (const int64_t id : ids) {
          sk.insert(sk.end(), keys.begin() + id * dim, keys.begin() + (id + 1) * dim);
          sv.insert(sv.end(), values.begin() + id * dim, values.begin() + (id + 1) * dim);
        }
        const float want_lse = attend(q, sk.data(), sv.data(), static_cast<size_t>(k), static_cast<size_t>(dim),
                                      static_cast<size_t>(dim), scale, weights, want.data());
        EXPECT_NEAR(lse, want_lse, 1e-5f * (1.f + std::fabs(want_lse))) << where;
        for (int64_t j = 0; j < dim; ++j) EXPECT_NEAR(o[j], want[j], 1e-5f * (1.f + std::fabs(want[j]))) << where;
      }
    }
  }
}

// A graph over the store's int8 rows scores them in place with attention's scorer: every score it
// answers is dot_row over that row, bit for bit (the flat index's too), and at a wide beam it finds
// the exact top-k; keys appended later (tail and merged) are searched as well.
TEST(KvInt8, GraphOverInt8RowsScoresAsAttentionAndTakesAppends) {
  const int64_t dim = 32, n = 1500, extra = 350;  // 3 merges of 100 keys, 50 left in the tail
  const Data d = make_data(n + extra, dim, 400, 10, 7);
  auto arena = std::make_shared<RowArena>(KvDtype::kQ8, dim, n + extra);
  arena->append(d.keys.data(), n);
  GraphBuildParams gp;
  gp.M = 12;
  gp.Kq = 32;
  gp.threads = 1;
  gp.merge_threshold = 100;  // merges at the crossing appends (no pool)
  GraphIndex graph(arena, n, d.train.data(), 400, gp);
  for (int64_t i = n; i < n + extra; ++i) {
    arena->append(d.keys.data() + i * dim, 1);
    graph.adopt_next_row(d.train.data() + (i % 400) * dim);
  }
  EXPECT_EQ(graph.coverage_error(n + extra), "");
  EXPECT_GT(graph.merge_stats().keys, 0);
  EXPECT_GT(graph.tail_size(), 0);
  const int k = 20;
  std::vector<int64_t> ids(k), want(k);
  std::vector<float> scores(k), want_scores(k);
  int hits = 0;
  for (int64_t t = 0; t < 10; ++t) {
    const float* q = d.test.data() + t * dim;
    const int got = graph.search(q, SearchParams{.k = k, .ef = 400}, ids.data(), scores.data(), nullptr);
    ASSERT_EQ(got, k);
    for (int r = 0; r < k; ++r) {
      const float direct = dot_row<Q8Elem>(q, static_cast<const int8_t*>(arena->row_data(ids[r])), dim);
      ASSERT_EQ(bits(scores[r]), bits(direct)) << "query " << t << " rank " << r;
    }
    exact_top_k(q, arena->data(), KvDtype::kQ8, n + extra, dim, k, want.data(), want_scores.data());
    for (int r = 0; r < k; ++r) hits += std::find(ids.begin(), ids.end(), want[r]) != ids.end() ? 1 : 0;
    ASSERT_EQ(bits(want_scores[0]),
              bits(dot_row<Q8Elem>(q, static_cast<const int8_t*>(arena->row_data(want[0])), dim)));
  }
  EXPECT_GE(hits, 10 * k * 95 / 100) << "recall at a wide beam";
}

// Graph shards (a graph per query head, and one per kv head) over int8 K and V: searches find the exact
// top-k at a wide beam (the recall audit), appended tokens merge into the graphs, and the coverage
// check holds throughout.
TEST(KvInt8, GraphShardsOverInt8KeysSearchAndAppend) {
  const int64_t dim = 32, n = 1200, extra = 200;
  constexpr int kGroup = 2;
  const Data d = make_data(n + extra, dim, kGroup * 300, 8 * kGroup, 9);
  MaintenancePool pool(1);
  for (const bool per_kv_head : {false, true}) {
    ShardIndexParams p;
    p.kind = IndexKind::kGraph;
    p.graph.M = 12;
    p.graph.Kq = 32;
    p.graph.threads = 1;
    p.graph.merge_threshold = 64;
    p.graph_per_kv_head = per_kv_head;
    p.maintenance = &pool;
    p.append_capacity = extra;
    HeadShard shard(dim, KvDtype::kQ8, d.keys.data(), d.values.data(), n, kGroup, d.train.data(), 300, p);
    for (int64_t i = n; i < n + extra; ++i) {
      std::vector<float> queries(d.train.begin() + (i % 300) * kGroup * dim,
                                 d.train.begin() + (i % 300 + 1) * kGroup * dim);
      shard.append(d.keys.data() + i * dim, d.values.data() + i * dim, queries.data());
    }
    pool.wait_idle();
    EXPECT_EQ(shard.coverage_error(), "");
    EXPECT_GT(shard.tail_counts().merged, 0);
    SearchStats stats;
    ShardScratch s;
    std::vector<float> o(kGroup * dim), lse(kGroup);
    for (int64_t t = 0; t < 8; ++t) {
      const float* qs = d.test.data() + t * kGroup * dim;
      const SearchParams sp{.k = 20, .ef = 300, .audit_recall = true};
      shard.search_attend_group(0, kGroup, qs, sp, 0.2f, s, o.data(), lse.data(), &stats);
      for (const float l : lse) EXPECT_TRUE(std::isfinite(l));
    }
    EXPECT_GE(stats.recall_hits, stats.recall_wanted * 95 / 100) << (per_kv_head ? "per kv head" : "per query head");
    EXPECT_EQ(stats.recall_wanted, 8 * kGroup * 20);
  }
}

// ---- Memory -----------------------------------------------------------------------------------

// Per token and kv head an int8 row costs head_dim + 4 bytes (codes and scale), a bf16 row 2 head_dim:
// a flat shard's memory_bytes is exactly its store's rows, rounded up to the arenas' commit steps (at
// most 2 MiB each, for K and for V).
TEST(KvInt8, MemoryBytesCountCodesAndScales) {
  const int64_t dim = 128, n = 1000, rows = 100000;
  const Data d = make_data(n, dim, 0, 0, 11);
  ShardIndexParams p;
  p.kind = IndexKind::kFlat;
  p.append_capacity = rows;
  const size_t steps = 2 * (size_t{2} << 20);
  auto expect_rows = [&](KvDtypes dtypes, size_t per_token) {
    HeadShard shard(dim, dtypes, d.keys.data(), d.values.data(), 0, 1, nullptr, 0, p);
    for (int64_t i = 0; i < rows; ++i) shard.append(d.keys.data() + (i % n) * dim, d.values.data() + (i % n) * dim);
    const size_t exact = static_cast<size_t>(rows) * per_token;
    EXPECT_GE(shard.memory_bytes(), exact) << kv_dtypes_name(dtypes);
    EXPECT_LT(shard.memory_bytes(), exact + steps) << kv_dtypes_name(dtypes);
    return shard.memory_bytes();
  };
  const size_t q8 = expect_rows(KvDtype::kQ8, 2 * (dim + 4));
  const size_t mixed = expect_rows(KvDtypes(KvDtype::kQ8, KvDtype::kBF16), (dim + 4) + 2 * dim);
  const size_t bf16 = expect_rows(KvDtype::kBF16, 2 * 2 * dim);
  EXPECT_LT(q8, mixed);
  EXPECT_LT(mixed, bf16);
}

// What memory_bytes counts is what the process holds: evicted tokens appended to an int8 shard grow its
// resident memory by memory_bytes' growth, within 10%.
TEST(KvInt8, MemoryBytesMatchResidentMemory) {
  if (test::kThreadSanitizer) GTEST_SKIP() << "TSan's shadow of every touched byte counts in the RSS (2x)";
  const int64_t dim = 128, rows = 1 << 18, batch = 1024;  // 66 MiB of int8 K and V
  const Data d = make_data(batch, dim, 0, 0, 13);
  ShardIndexParams p;
  p.kind = IndexKind::kFlat;
  p.append_capacity = rows;
  HeadShard shard(dim, KvDtype::kQ8, d.keys.data(), d.values.data(), 0, 1, nullptr, 0, p);
  const size_t bytes_before = shard.memory_bytes();
  const size_t rss_before = read_process_usage().rss_bytes;
  for (int64_t i = 0; i < rows; ++i) {
    shard.append(d.keys.data() + (i % batch) * dim, d.values.data() + (i % batch) * dim);
  }
  const size_t rss_grown = read_process_usage().rss_bytes - rss_before;
  const size_t bytes_grown = shard.memory_bytes() - bytes_before;
  EXPECT_GE(bytes_grown, static_cast<size_t>(rows) * 2 * (dim + 4));
  EXPECT_NEAR(static_cast<double>(rss_grown), static_cast<double>(bytes_grown), 0.1 * static_cast<double>(bytes_grown))
      << "resident memory grew by " << rss_grown << " bytes, memory_bytes by " << bytes_grown;
}

}  // namespace
}  // namespace ra::retriever
