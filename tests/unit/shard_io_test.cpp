// HeadShard::save / load (issue 18: `ra serve --load` rebuilds no index). For every index kind (flat,
// IVF, HNSW, a graph per query head and per kv head, with the 8-bit navigation copy, with scan budgets)
// and store dtype (bf16, f16, f32; int8 keys and/or values, codes and scales), a shard loaded from a
// saved one answers every search (search_attend, _group, _interleaved; several k, ef, nprobe and
// budgets) bit for bit as the one saved: ids, scores, outputs, lse and work counters; and goes on
// doing so after the same evicted tokens reach both (merged into the graphs or not). Broken input
// (truncated at any point, another magic, version, byte order, or a shard built with other parameters)
// is an ra::Error that says what is wrong, never a crash.

#include "cpu_retriever/head_shard.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <future>
#include <limits>
#include <memory>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "common/error.h"
#include "cpu_retriever/kv_int8.h"
#include "cpu_retriever/maintenance_pool.h"
#include "cpu_retriever/shard_io.h"
#ifdef RA_HAVE_FAISS
#include "cpu_retriever/faiss_indexes.h"
#endif

namespace ra::retriever {
namespace {

constexpr int64_t kDim = 32;
constexpr int kGroup = 2;

// Keys around +m, each member's queries around -m plus an offset of its own (so a narrow beam misses
// keys, and budgets matter); values plain Gaussian. Train: [kGroup][n_train][dim]; test, appended
// tokens' queries: [count][kGroup][dim].
struct Data {
  int64_t n, n_train;
  std::vector<float> keys, values, train, test, extra_keys, extra_values, extra_queries;
};

Data make_data(int64_t n, int64_t n_train, int64_t n_test, int64_t n_extra, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> g(0.f, 1.f);
  std::vector<float> m(kDim), offset(kGroup * kDim);
  for (auto& x : m) x = g(rng);
  for (auto& x : offset) x = 0.8f * g(rng);
  auto fill = [&](std::vector<float>& out, int64_t rows, float mean, bool query) {
    out.resize(static_cast<size_t>(rows * kDim));
    for (int64_t i = 0; i < rows; ++i) {
      const int64_t member = i % kGroup;
      for (int64_t j = 0; j < kDim; ++j) {
        out[i * kDim + j] = mean * m[j] + (query ? offset[member * kDim + j] : 0.f) + 0.7f * g(rng);
      }
    }
  };
  Data d{n, n_train, {}, {}, {}, {}, {}, {}, {}};
  fill(d.keys, n, 1.f, false);
  d.values.resize(static_cast<size_t>(n * kDim));
  for (auto& v : d.values) v = g(rng);
  // Train rows are [member][n_train]: fill by member so each block has its own offset.
  d.train.resize(static_cast<size_t>(kGroup * n_train * kDim));
  for (int h = 0; h < kGroup; ++h) {
    for (int64_t i = 0; i < n_train; ++i) {
      for (int64_t j = 0; j < kDim; ++j) {
        d.train[(h * n_train + i) * kDim + j] = -1.5f * m[j] + offset[h * kDim + j] + 0.7f * g(rng);
      }
    }
  }
  fill(d.test, n_test * kGroup, -1.5f, true);
  fill(d.extra_keys, n_extra, 1.f, false);
  fill(d.extra_values, n_extra, 0.f, false);
  fill(d.extra_queries, n_extra * kGroup, -1.5f, true);
  return d;
}

struct Case {
  const char* name;
  IndexKind kind;
  KvDtypes dtype;
  bool per_kv_head = false;
  bool int8_navigation = false;
  std::vector<double> fractions;
  int warm_history = 0;
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }  // gtest would print its padding bytes

ShardIndexParams params_for(const Case& c) {
  ShardIndexParams p;
  p.kind = c.kind;
  p.graph.M = 12;
  p.graph.Kq = 24;
  p.graph.ef_construction = 32;
  p.graph.threads = 1;
  p.graph.entry_samples = 8;
  p.graph.int8_navigation = c.int8_navigation;
  p.graph.append_capacity = 4096;
  p.graph_per_kv_head = c.per_kv_head;
  p.ivf_nlist = 12;
  p.hnsw_M = 8;
  p.hnsw_ef_construction = 32;
  p.seed = 7;
  p.warm_history = c.warm_history;
  p.append_capacity = 4096;
  p.scan_fractions = c.fractions;
  p.scan_top_k = 10;
  p.stagger_key = 3;
  return p;
}

std::unique_ptr<HeadShard> build(const Data& d, const Case& c, const ShardIndexParams& p) {
  return std::make_unique<HeadShard>(kDim, c.dtype, d.keys.data(), d.values.data(), d.n, kGroup, d.train.data(),
                                     d.n_train, p);
}

std::vector<std::byte> save(const HeadShard& shard) {
  std::vector<std::byte> bytes;
  ShardWriter out(bytes);
  shard.save(out);
  return bytes;
}

std::unique_ptr<HeadShard> load(std::span<const std::byte> bytes, const Case& c, const ShardIndexParams& p) {
  ShardReader in(bytes, "test shard");
  std::unique_ptr<HeadShard> shard = HeadShard::load(in, kDim, c.dtype, kGroup, p);
  EXPECT_EQ(in.left(), 0u) << "the record's end";
  return shard;
}

// Bitwise equality of float arrays (NaN and -inf included).
::testing::AssertionResult same_bits(std::span<const float> a, std::span<const float> b) {
  if (a.size() != b.size()) return ::testing::AssertionFailure() << a.size() << " vs " << b.size() << " floats";
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::bit_cast<uint32_t>(a[i]) != std::bit_cast<uint32_t>(b[i])) {
      return ::testing::AssertionFailure() << "[" << i << "] " << a[i] << " vs " << b[i];
    }
  }
  return ::testing::AssertionSuccess();
}

void expect_same_stats(const SearchStats& a, const SearchStats& b, const std::string& where) {
  EXPECT_EQ(a.distance_computations, b.distance_computations) << where;
  EXPECT_EQ(a.hops, b.hops) << where;
  EXPECT_EQ(a.recall_hits, b.recall_hits) << where;
  EXPECT_EQ(a.recall_wanted, b.recall_wanted) << where;
}

// The knobs searched: several k and ef (or nprobe), every scan budget, the exact walk of an 8-bit graph.
std::vector<SearchParams> knobs(size_t budgets) {
  std::vector<SearchParams> out;
  for (const int k : {1, 10, 40}) {
    for (const int ef : {0, 8, 64}) {
      SearchParams p;
      p.k = k;
      p.ef = ef;
      p.nprobe = ef / 8;  // 0, 1, 8
      p.audit_recall = k == 10;
      out.push_back(p);
    }
  }
  for (size_t b = 0; b < budgets; ++b) out.push_back(SearchParams{.k = 10, .scan_budget = static_cast<int>(b)});
  out.push_back(SearchParams{.k = 10, .ef = 16, .exact_navigation = true});
  out.push_back(SearchParams{.k = 10, .ef = 16, .expand = 2});
  return out;
}

// Both shards answer every test query, every knob, through every entry point, bit for bit alike.
void expect_same_answers(HeadShard& a, HeadShard& b, const Data& d, const std::string& where) {
  ASSERT_EQ(a.size(), b.size()) << where;
  ASSERT_EQ(a.indexed(), b.indexed()) << where;
  ASSERT_EQ(a.scan_budget_count(), b.scan_budget_count()) << where;
  const float scale = 1.0f / std::sqrt(static_cast<float>(kDim));
  const int64_t n_test = static_cast<int64_t>(d.test.size()) / (kGroup * kDim);
  ShardScratch sa, sb;
  std::vector<float> oa(kGroup * kDim), ob(kGroup * kDim), la(kGroup), lb(kGroup);
  int searched = 0;
  for (const SearchParams& p : knobs(a.scan_budget_count())) {
    for (int64_t t = 0; t < n_test; ++t) {
      const float* qs = d.test.data() + t * kGroup * kDim;
      const std::string at = fmt::format("{}: query {} k {} ef {} nprobe {} budget {}", where, t, p.k, p.ef,
                                         p.nprobe, p.scan_budget);
      SearchStats ta, tb;
      for (int m = 0; m < kGroup; ++m) {
        const float lse_a = a.search_attend(m, qs + m * kDim, p, scale, sa, oa.data(), &ta);
        const float lse_b = b.search_attend(m, qs + m * kDim, p, scale, sb, ob.data(), &tb);
        ASSERT_TRUE(same_bits({&lse_a, 1}, {&lse_b, 1})) << at << " member " << m;
        ASSERT_TRUE(same_bits({oa.data(), kDim}, {ob.data(), kDim})) << at << " member " << m;
        ASSERT_EQ(sa.merged_ids, sb.merged_ids) << at << " member " << m;
        ASSERT_TRUE(same_bits(sa.scores, sb.scores)) << at << " member " << m;
        ASSERT_TRUE(std::equal(a.last_answer(m).begin(), a.last_answer(m).end(), b.last_answer(m).begin(),
                               b.last_answer(m).end()))
            << at;
      }
      expect_same_stats(ta, tb, at + " search_attend");
      for (const bool interleaved : {false, true}) {
        SearchStats ga, gb;
        if (interleaved) {
          a.search_attend_interleaved(0, kGroup, qs, p, scale, sa, oa.data(), la.data(), &ga);
          b.search_attend_interleaved(0, kGroup, qs, p, scale, sb, ob.data(), lb.data(), &gb);
        } else {
          a.search_attend_group(0, kGroup, qs, p, scale, sa, oa.data(), la.data(), &ga);
          b.search_attend_group(0, kGroup, qs, p, scale, sb, ob.data(), lb.data(), &gb);
        }
        const std::string how = at + (interleaved ? " interleaved" : " group");
        ASSERT_TRUE(same_bits(la, lb)) << how;
        ASSERT_TRUE(same_bits(oa, ob)) << how;
        ASSERT_EQ(sa.group_ids, sb.group_ids) << how;
        ASSERT_EQ(sa.group_found, sb.group_found) << how;
        ASSERT_TRUE(same_bits(sa.group_scores, sb.group_scores)) << how;
        expect_same_stats(ga, gb, how);
      }
      ++searched;
    }
  }
  EXPECT_GT(searched, 0);
}

// Appends d's extra tokens (with their queries) to a shard, with any merges they start held back until
// all are in, so a merge takes the same keys whatever the threads' timing.
void append_all(HeadShard& shard, MaintenancePool& pool, const Data& d) {
  std::promise<void> go;
  std::shared_future<void> started = go.get_future().share();
  ASSERT_EQ(pool.submit(&go, MaintenancePool::Job{[started] { started.wait(); }, {}}),
            MaintenancePool::Submitted::kQueued);
  const int64_t n_extra = static_cast<int64_t>(d.extra_keys.size()) / kDim;
  for (int64_t i = 0; i < n_extra; ++i) {
    shard.append(d.extra_keys.data() + i * kDim, d.extra_values.data() + i * kDim,
                 d.extra_queries.data() + i * kGroup * kDim);
  }
  go.set_value();
  pool.wait_idle();
}

class ShardIo : public ::testing::TestWithParam<Case> {};

TEST_P(ShardIo, LoadedShardAnswersBitForBitAsTheSavedOne) {
  const Case& c = GetParam();
  const Data d = make_data(1200, 160, 6, 90, 17);
  MaintenancePool pool_a(1), pool_b(1);
  ShardIndexParams p = params_for(c);
  p.graph.merge_threshold = 40;  // the appends below cross it: the graphs merge them
  p.maintenance = &pool_a;
  std::unique_ptr<HeadShard> a = build(d, c, p);
  if (!c.fractions.empty() && c.kind != IndexKind::kFlat) {
    ASSERT_EQ(a->scan_budget_count(), c.fractions.size());
  }
  const std::vector<std::byte> bytes = save(*a);
  p.maintenance = &pool_b;
  std::unique_ptr<HeadShard> b = load(bytes, c, p);
  EXPECT_EQ(b->coverage_error(), "");
  for (size_t budget = 0; budget < a->scan_budget_count(); ++budget) {
    for (size_t i = 0; i < a->scan_budgets(budget).size(); ++i) {
      EXPECT_EQ(a->scan_budgets(budget)[i].ef, b->scan_budgets(budget)[i].ef);
      EXPECT_EQ(a->scan_budgets(budget)[i].nprobe, b->scan_budgets(budget)[i].nprobe);
      EXPECT_EQ(a->scan_budgets(budget)[i].scanned_fraction, b->scan_budgets(budget)[i].scanned_fraction);
    }
  }
  // A loaded shard saves to the same bytes: nothing was lost or changed on the way.
  EXPECT_TRUE(save(*b) == bytes) << "resaved shard differs";
  expect_same_answers(*a, *b, d, "loaded");

  append_all(*a, pool_a, d);
  append_all(*b, pool_b, d);
  EXPECT_EQ(a->coverage_error(), "");
  EXPECT_EQ(b->coverage_error(), "");
  EXPECT_EQ(a->tail_counts().merged, b->tail_counts().merged);
  EXPECT_EQ(a->tail_counts().tail, b->tail_counts().tail);
  if (c.kind == IndexKind::kGraph) {
    EXPECT_GT(a->tail_counts().merged, 0) << "no merge ran";
  }
  expect_same_answers(*a, *b, d, "after appends");
}

std::vector<Case> cases() {
  std::vector<Case> out = {
      Case{"flat_f32", IndexKind::kFlat, KvDtype::kF32},
      Case{"flat_bf16", IndexKind::kFlat, KvDtype::kBF16},
      Case{"graph_per_query_head_f32", IndexKind::kGraph, KvDtype::kF32},
      Case{"graph_per_query_head_bf16_warm", IndexKind::kGraph, KvDtype::kBF16, false, false, {}, 2},
      Case{"graph_per_kv_head_bf16", IndexKind::kGraph, KvDtype::kBF16, true},
      Case{"graph_per_kv_head_f16_warm", IndexKind::kGraph, KvDtype::kF16, true, false, {}, 2},
      Case{"graph_int8_per_kv_head_bf16", IndexKind::kGraph, KvDtype::kBF16, true, true},
      Case{"graph_int8_per_query_head_f32", IndexKind::kGraph, KvDtype::kF32, false, true},
      Case{"graph_per_query_head_budgets", IndexKind::kGraph, KvDtype::kBF16, false, false, {0.05, 0.15}},
      Case{"graph_int8_per_kv_head_budgets", IndexKind::kGraph, KvDtype::kF32, true, true, {0.05, 0.15}},
      // int8 KV rows (kv_int8.h): codes and scales saved and restored bit for bit; the graphs walk them.
      Case{"flat_q8", IndexKind::kFlat, KvDtype::kQ8},
      Case{"flat_q8_keys_bf16_values", IndexKind::kFlat, KvDtypes(KvDtype::kQ8, KvDtype::kBF16)},
      Case{"graph_per_query_head_q8", IndexKind::kGraph, KvDtype::kQ8},
      Case{"graph_per_kv_head_q8_warm", IndexKind::kGraph, KvDtype::kQ8, true, false, {}, 2},
      Case{"graph_per_kv_head_q8_keys_bf16_values_budgets", IndexKind::kGraph, KvDtypes(KvDtype::kQ8, KvDtype::kBF16),
           true, false, {0.05, 0.15}},
      Case{"graph_int8_per_kv_head_bf16_keys_q8_values", IndexKind::kGraph, KvDtypes(KvDtype::kBF16, KvDtype::kQ8),
           true, true},
  };
#ifdef RA_HAVE_FAISS
  out.push_back(Case{"ivf_f32_budgets", IndexKind::kIvf, KvDtype::kF32, false, false, {0.1, 0.3}});
  out.push_back(Case{"ivf_bf16", IndexKind::kIvf, KvDtype::kBF16});
  out.push_back(Case{"hnsw_bf16_budgets", IndexKind::kHnsw, KvDtype::kBF16, false, false, {0.05, 0.2}});
  out.push_back(Case{"hnsw_f32", IndexKind::kHnsw, KvDtype::kF32});
  out.push_back(Case{"ivf_q8", IndexKind::kIvf, KvDtype::kQ8, false, false, {0.1}});
  out.push_back(Case{"hnsw_q8", IndexKind::kHnsw, KvDtype::kQ8});
#endif
  return out;
}

INSTANTIATE_TEST_SUITE_P(Kinds, ShardIo, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<Case>& info) { return std::string(info.param.name); });

// A shard built on no rows (a prompt that fits the GPU's static set) saves and loads too, and its tail
// is searched after appends as the original's is.
TEST(ShardIoEmpty, AShardOfNoRowsRoundTrips) {
  const Data d = make_data(0, 40, 3, 20, 5);
  for (const IndexKind kind : {IndexKind::kFlat, IndexKind::kGraph}) {
    const Case c{"empty", kind, KvDtype::kBF16};
    MaintenancePool pool(1);  // outlives the shards
    ShardIndexParams p = params_for(c);
    std::unique_ptr<HeadShard> a = build(d, c, p);
    std::unique_ptr<HeadShard> b = load(save(*a), c, p);
    EXPECT_EQ(b->size(), 0);
    append_all(*a, pool, d);
    append_all(*b, pool, d);
    expect_same_answers(*a, *b, d, "empty shard after appends");
  }
}

// ---- Errors -------------------------------------------------------------------------------------

// The message of the ra::Error that loading `bytes` throws ("" when none is thrown).
std::string load_error(std::span<const std::byte> bytes, const Case& c, const ShardIndexParams& p,
                       KvDtypes dtype, int group = kGroup) {
  try {
    ShardReader in(bytes, "shard layer 3 kv head 1");
    HeadShard::load(in, kDim, dtype, group, p);
  } catch (const Error& e) {
    return e.what();
  }
  (void)c;
  return "";
}

struct Saved {
  Data d;
  Case c;
  ShardIndexParams p;
  std::vector<std::byte> bytes;
};

Saved saved_shard(const Case& c) {
  Saved s{make_data(300, 60, 1, 4, 23), c, params_for(c), {}};
  s.bytes = save(*build(s.d, s.c, s.p));
  return s;
}

Saved saved_graph(bool int8_navigation) {
  return saved_shard(Case{"graph", IndexKind::kGraph, KvDtype::kBF16, false, int8_navigation, {0.1}});
}

// Cut anywhere, a record is an error naming the shard and the field it ran out in, never a crash or a
// huge allocation (this test also ran under valgrind: no error). A FAISS index's bytes are counted
// before they are handed to FAISS, so a cut record never reaches FAISS's reader.
TEST(ShardIoErrors, TruncatedRecordsAreErrorsNamingTheField) {
  std::vector<Saved> all = {saved_graph(false), saved_graph(true)};
#ifdef RA_HAVE_FAISS
  all.push_back(saved_shard(Case{"ivf", IndexKind::kIvf, KvDtype::kF32, false, false, {0.2}}));
  all.push_back(saved_shard(Case{"hnsw", IndexKind::kHnsw, KvDtype::kBF16}));
#endif
  for (const Saved& s : all) {
    const size_t size = s.bytes.size();
    std::vector<size_t> cuts = {0, 1, 8, 19, 20, 21, 27, 28, size / 2, size - 9, size - 8, size - 1};
    for (size_t cut = 29; cut < size; cut += size / 97) cuts.push_back(cut);  // every part of the record
    for (const size_t cut : cuts) {
      const std::string error = load_error(std::span(s.bytes).first(cut), s.c, s.p, s.c.dtype);
      ASSERT_NE(error, "") << s.c.name << ": cut at " << cut << " of " << size;
      EXPECT_NE(error.find("shard layer 3 kv head 1: "), std::string::npos) << error;
      EXPECT_NE(error.find("bytes left"), std::string::npos) << error;
    }
  }
  // A field named: the adjacency's neighbours of graph 0, cut in their middle.
  const Saved& s = all.front();
  bool named = false;
  for (size_t cut = 0; cut < s.bytes.size() && !named; cut += 64) {
    const std::string error = load_error(std::span(s.bytes).first(cut), s.c, s.p, s.c.dtype);
    named = error.find("shard layer 3 kv head 1: index 0: adjacency neighbours: ") != std::string::npos;
  }
  EXPECT_TRUE(named);
}

TEST(ShardIoErrors, MagicVersionAndByteOrderAreChecked) {
  const Saved s = saved_graph(false);
  std::vector<std::byte> bytes = s.bytes;
  bytes[0] ^= std::byte{0xff};
  std::string error = load_error(bytes, s.c, s.p, s.c.dtype);
  EXPECT_NE(error.find("shard layer 3 kv head 1: header: magic"), std::string::npos) << error;

  bytes = s.bytes;
  uint32_t version = 3;
  std::memcpy(bytes.data() + offsetof(RecordHeader, version), &version, sizeof version);
  error = load_error(bytes, s.c, s.p, s.c.dtype);
  EXPECT_NE(error.find("format version 3, this build reads version 2 (written by a newer build)"), std::string::npos)
      << error;
  // Version 1 (before int8 rows and separate key and value dtypes) is refused, saying what to do.
  version = 1;
  std::memcpy(bytes.data() + offsetof(RecordHeader, version), &version, sizeof version);
  error = load_error(bytes, s.c, s.p, s.c.dtype);
  EXPECT_NE(error.find("format version 1, this build reads version 2 (written by an older build: build it again and "
                       "save it with this one)"),
            std::string::npos)
      << error;

  bytes = s.bytes;
  const uint32_t swapped = 0x04030201u;
  std::memcpy(bytes.data() + offsetof(RecordHeader, byte_order), &swapped, sizeof swapped);
  error = load_error(bytes, s.c, s.p, s.c.dtype);
  EXPECT_NE(error.find("another byte order"), std::string::npos) << error;

  bytes = s.bytes;
  bytes.back() ^= std::byte{1};  // the end mark
  error = load_error(bytes, s.c, s.p, s.c.dtype);
  EXPECT_NE(error.find("end mark"), std::string::npos) << error;
}

// A shard built with other parameters than the loading one's is refused, naming the parameter and
// both values; runtime knobs may differ.
TEST(ShardIoErrors, MismatchedParametersAreNamedWithBothValues) {
  const Saved s = saved_graph(false);
  auto expect = [&](const ShardIndexParams& p, KvDtypes dtype, int group, const std::string& want) {
    const std::string error = load_error(s.bytes, s.c, p, dtype, group);
    EXPECT_NE(error.find(want), std::string::npos) << "got: " << error;
  };
  ShardIndexParams p = s.p;
  p.graph.M = 16;
  expect(p, s.c.dtype, kGroup,
         "shard layer 3 kv head 1: parameters: graph.M: the shard was built with 12, this one is configured with 16");
  p = s.p;
  p.kind = IndexKind::kFlat;
  expect(p, s.c.dtype, kGroup, "index kind: the shard was built with graph, this one is configured with flat");
  expect(s.p, KvDtype::kF32, kGroup, "kv dtype: the shard was built with bf16, this one is configured with f32");
  expect(s.p, KvDtypes(KvDtype::kBF16, KvDtype::kQ8), kGroup,
         "kv dtype: the shard was built with bf16, this one is configured with bf16/int8");
  expect(s.p, s.c.dtype, 4, "group size: the shard was built with 2, this one is configured with 4");
  p = s.p;
  p.scan_fractions = {0.1, 0.2};
  expect(p, s.c.dtype, kGroup,
         "scan_fractions: the shard was built with [0.1], this one is configured with [0.1, 0.2]");
  p = s.p;
  p.graph.int8_navigation = true;
  expect(p, s.c.dtype, kGroup, "graph.int8_navigation: the shard was built with false");
  p = s.p;
  p.graph_per_kv_head = true;
  expect(p, s.c.dtype, kGroup, "graph_per_kv_head");

  // Runtime knobs come from the loading shard: these load.
  p = s.p;
  p.warm_history = 4;
  p.graph.merge_threshold = 100;
  p.graph.default_ef = 50;
  p.append_capacity = 10;
  p.graph.threads = 2;
  p.stagger_key = -1;
  EXPECT_EQ(load_error(s.bytes, s.c, p, s.c.dtype), "");
}

// An int8 row's scale comes from the rule (finite, >= 0): a record with another is refused, naming the
// row; and the rows' bytes are the store's own (codes, then the scale), saved as they are.
TEST(ShardIoErrors, Int8RowsAreSavedAsStoredAndBadScalesRefused) {
  const Case c{"flat_q8", IndexKind::kFlat, KvDtypes(KvDtype::kQ8, KvDtype::kBF16)};
  const Saved s = saved_shard(c);
  const std::unique_ptr<HeadShard> shard = load(s.bytes, c, s.p);
  // The keys' bytes start after the parameters and the row count: find them by the first row's codes.
  std::vector<int8_t> row(kDim + sizeof(float));
  ASSERT_LT(quantise_q8_row(s.d.keys.data(), kDim, row.data()), 0);
  const auto* first = reinterpret_cast<const std::byte*>(row.data());
  const auto at = std::search(s.bytes.begin(), s.bytes.end(), first, first + row.size());
  ASSERT_NE(at, s.bytes.end()) << "the first key row's codes and scale are not in the record";
  std::vector<std::byte> bytes = s.bytes;
  const auto scale_at = static_cast<size_t>(at - s.bytes.begin()) + 2 * row.size() + kDim;  // row 2's scale
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::memcpy(bytes.data() + scale_at, &nan, sizeof nan);
  const std::string error = load_error(bytes, c, s.p, c.dtype);
  EXPECT_NE(error.find("shard layer 3 kv head 1: keys: int8 row 2 has scale nan"), std::string::npos) << error;
}

// Over int8 keys the graph walks the stored rows: an 8-bit navigation copy is refused, not kept twice.
TEST(ShardIoErrors, Int8KeysRefuseTheNavigationCopy) {
  const Case c{"graph_q8_nav", IndexKind::kGraph, KvDtype::kQ8, false, true};
  const Data d = make_data(300, 60, 1, 0, 23);
  try {
    build(d, c, params_for(c));
    FAIL() << "built an 8-bit copy of int8 keys";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("int8_navigation over int8 key rows"), std::string::npos) << e.what();
  }
}

// Only the build is saved: a shard that took evicted tokens refuses, rather than drop them.
TEST(ShardIoErrors, ASavedShardHoldsItsBuildOnly) {
  Saved s = saved_graph(false);
  std::unique_ptr<HeadShard> shard = build(s.d, s.c, s.p);
  shard->append(s.d.extra_keys.data(), s.d.extra_values.data());
  std::vector<std::byte> bytes;
  ShardWriter out(bytes);
  try {
    shard->save(out);
    FAIL() << "saved a shard with an appended row";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("1 rows were appended since the build"), std::string::npos) << e.what();
  }
}

// Several records follow each other in one stream (a layer's shards in one file), each read to its end.
TEST(ShardIo, RecordsFollowEachOtherInOneStream) {
  const Data d = make_data(200, 40, 2, 0, 29);
  const Case flat{"flat", IndexKind::kFlat, KvDtype::kF32};
  const Case graph{"graph", IndexKind::kGraph, KvDtype::kF32};
  std::vector<std::byte> bytes;
  ShardWriter out(bytes);
  build(d, flat, params_for(flat))->save(out);
  const size_t first = bytes.size();
  build(d, graph, params_for(graph))->save(out);
  ShardReader in(bytes, "layer 0");
  EXPECT_EQ(HeadShard::load(in, kDim, KvDtype::kF32, kGroup, params_for(flat))->size(), 200);
  EXPECT_EQ(in.offset(), first);
  EXPECT_EQ(HeadShard::load(in, kDim, KvDtype::kF32, kGroup, params_for(graph))->size(), 200);
  EXPECT_EQ(in.left(), 0u);
}

// The stream pair itself: bounds and counts checked before anything is allocated.
TEST(ShardReader, CountsBeyondTheBytesAreErrorsBeforeAnyAllocation) {
  std::vector<std::byte> bytes;
  ShardWriter out(bytes);
  out.put<uint64_t>(uint64_t{1} << 62);  // an array count no input holds
  out.put<float>(1.0f);
  ShardReader in(bytes, "ctx");
  try {
    in.get_array<float>("rows");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), "ctx: rows: 4 bytes left, 4611686018427387904 elements of 4 bytes needed");
  }
  ShardReader again(bytes, "ctx");
  {
    auto section = again.section("graph 1");
    EXPECT_EQ(again.get<uint64_t>("count"), uint64_t{1} << 62);
    try {
      again.get<double>("norm");
      FAIL();
    } catch (const Error& e) {
      EXPECT_EQ(std::string(e.what()), "ctx: graph 1: norm: 4 bytes left, 8 needed");
    }
  }
  EXPECT_EQ(again.context(), "ctx");
}

#ifdef RA_HAVE_FAISS
// FAISS's own bytes, cut short or of the other kind, are ra::Errors too (FAISS's exceptions translated).
// Only cuts before FAISS allocates anything: FAISS 1.7.3's reader leaks what it has read when it throws
// (and LeakSanitizer runs this suite); a cut shard record never gets that far (the test above).
TEST(ShardIoErrors, BrokenFaissBytesAreErrors) {
  const Data d = make_data(400, 1, 1, 0, 31);
  std::vector<std::byte> ivf, hnsw;
  write_faiss_index(*make_ivf_flat_index(d.keys.data(), d.n, kDim, 8, 1), ivf);
  write_faiss_index(*make_hnsw_flat_index(d.keys.data(), d.n, kDim, 8, 16), hnsw);
  for (const size_t cut : {size_t{0}, size_t{3}}) {
    EXPECT_THROW(read_ivf_flat_index(std::span(ivf).first(cut), "ivf"), Error) << cut;
    EXPECT_THROW(read_hnsw_flat_index(std::span(hnsw).first(cut), "hnsw"), Error) << cut;
  }
  try {
    read_ivf_flat_index(hnsw, "layer 0 kv head 0: index 0");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("layer 0 kv head 0: index 0: the saved FAISS index is no IVF-Flat index"),
              std::string::npos)
        << e.what();
  }
  std::vector<std::byte> longer = ivf;
  longer.push_back(std::byte{0});
  EXPECT_THROW(read_ivf_flat_index(longer, "ivf"), Error);  // bytes FAISS did not read
  EXPECT_EQ(read_ivf_flat_index(ivf, "ivf")->size(), 400);
  EXPECT_EQ(read_hnsw_flat_index(hnsw, "hnsw")->size(), 400);
}
#endif

}  // namespace
}  // namespace ra::retriever
