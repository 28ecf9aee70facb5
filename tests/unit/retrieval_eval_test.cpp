// The retrieval benchmark core on a small synthetic layer: flat is exact by construction, exhaustive
// knobs reach recall 1, and the rows carry every field the issue names.

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <random>
#include <utility>
#include <vector>

#include "common/half.h"
#include "cpu_retriever/dot.h"
#include "bench/retrieval/retrieval_eval.h"

namespace ra::retriever {
namespace {

struct SyntheticLayer {
  int64_t heads = 4, kv_heads = 2, dim = 32, tokens = 600;
  std::vector<float> q, k, v;
  LayerQkv view() const { return {0, heads, kv_heads, dim, tokens, 0.17f, q.data(), k.data(), v.data()}; }
};

SyntheticLayer make_layer() {
  SyntheticLayer l;
  std::mt19937 rng(5);
  std::normal_distribution<float> dist;
  l.q.resize(l.heads * l.tokens * l.dim);
  l.k.resize(l.kv_heads * l.tokens * l.dim);
  l.v.resize(l.k.size());
  for (float& x : l.q) x = dist(rng) + 0.5f;  // queries off the keys' distribution
  for (float& x : l.k) x = dist(rng);
  for (float& x : l.v) x = dist(rng);
  return l;
}

std::map<std::string, nlohmann::json> run(const RetrievalBenchConfig& config) {
  const SyntheticLayer layer = make_layer();
  std::map<std::string, RowAccumulator> rows;
  std::vector<std::string> order;
  run_retrieval_layer(layer.view(), config, rows, order);
  std::map<std::string, nlohmann::json> out;
  for (const auto& key : order) out[key] = nlohmann::json::parse(row_json(rows.at(key)));
  return out;
}

TEST(RetrievalEval, FlatIsExactAndRowsCarryEveryField) {
  const auto rows = run({.prefill = 500, .k = 10, .threads = 2, .indexes = {"flat", "graph", "graph_kv"}});
  ASSERT_TRUE(rows.count("flat|-"));
  const auto& flat = rows.at("flat|-");
  for (const char* field : {"index", "knob", "recall", "worst_head_recall", "scanned", "us_per_query", "build_s",
                            "index_bytes", "attn_rel_err"}) {
    EXPECT_TRUE(flat.contains(field)) << field;
  }
  EXPECT_DOUBLE_EQ(flat["recall"].get<double>(), 1.0);
  EXPECT_DOUBLE_EQ(flat["worst_head_recall"].get<double>(), 1.0);
  EXPECT_DOUBLE_EQ(flat["scanned"].get<double>(), 1.0);
  EXPECT_EQ(flat["queries"].get<int64_t>(), 4 * 100);  // 4 heads x (600 - 500) test queries
  EXPECT_EQ(flat["heads"].get<int64_t>(), 4);
  // Top-10 of 500 random keys misses most of the (diffuse) attention mass: a real, finite error.
  EXPECT_GT(flat["attn_rel_err"].get<double>(), 0.0);
  EXPECT_TRUE(std::isfinite(flat["attn_rel_err"].get<double>()));

  // The largest beam (ef = 10k = 100 here) on 500 keys: near-exhaustive graph search.
  for (const char* name : {"graph|ef=100", "graph_kv|ef=100"}) {
    ASSERT_TRUE(rows.count(name)) << name;
    EXPECT_GT(rows.at(name)["recall"].get<double>(), 0.97) << name;
    EXPECT_LT(rows.at(name)["scanned"].get<double>(), 1.0) << name;
    EXPECT_GT(rows.at(name)["index_bytes"].get<double>(), 0.0) << name;
  }
}

TEST(RetrievalEval, RetrievingEveryKeyGivesFullAttention) {
  // k = 64 > N = 50: every key is retrieved
  const auto rows = run({.prefill = 50, .k = 64, .heads = {1}, .indexes = {"flat"}});
  const auto& flat = rows.at("flat|-");
  EXPECT_DOUBLE_EQ(flat["recall"].get<double>(), 1.0);
  EXPECT_LT(flat["attn_rel_err"].get<double>(), 1e-6);
  EXPECT_EQ(flat["heads"].get<int64_t>(), 1);
}

// Exact top-k ids of q over rows [0, n) of keys: [n][dim], best first (ties: lower id), by dot_f32.
std::vector<int64_t> top_ids(const float* q, const float* keys, int64_t n, int64_t dim, int k) {
  std::vector<std::pair<float, int64_t>> s;
  for (int64_t i = 0; i < n; ++i) s.push_back({-dot_f32(q, keys + i * dim, dim), i});
  std::partial_sort(s.begin(), s.begin() + k, s.end());
  std::vector<int64_t> ids;
  for (int r = 0; r < k; ++r) ids.push_back(s[r].second);
  return ids;
}

// --key-dtype bf16: the indexes score the rounded keys, while recall stays against the float32 truth,
// so flat search's recall is exactly the overlap of the two exact top-k lists; the graphs, appended
// keys included (adopted from the shared arena), still find what flat finds.
TEST(RetrievalEval, SixteenBitKeysAreScoredRoundedAgainstTheFloat32Truth) {
  const RetrievalBenchConfig config{.prefill = 500, .k = 10, .threads = 2, .indexes = {"flat", "graph"},
                                    .graph_append = 100, .key_dtype = KvDtype::kBF16};
  const auto rows = run(config);

  const SyntheticLayer l = make_layer();
  const int64_t N = config.prefill, D = l.dim, T = l.tokens, group = l.heads / l.kv_heads;
  double overlap = 0;
  int64_t queries = 0;
  for (int64_t h = 0; h < l.heads; ++h) {
    const float* keys = l.k.data() + (h / group) * T * D;
    std::vector<float> rounded(keys, keys + N * D);
    for (float& x : rounded) x = to_float(to_bf16(x));
    for (int64_t pos = N; pos < T; ++pos, ++queries) {
      const float* q = l.q.data() + (h * T + pos) * D;
      const auto truth = top_ids(q, keys, N, D, config.k), got = top_ids(q, rounded.data(), N, D, config.k);
      for (int64_t id : got) overlap += std::count(truth.begin(), truth.end(), id);
    }
  }
  const double want = overlap / (static_cast<double>(queries) * config.k);
  ASSERT_LT(want, 1.0);  // the rounding moves some keys across the top-10 boundary: the test can tell
  EXPECT_NEAR(rows.at("flat|-")["recall"].get<double>(), want, 1e-12);
  EXPECT_DOUBLE_EQ(rows.at("flat|-")["scanned"].get<double>(), 1.0);
  for (const char* name : {"graph|ef=100", "graph_tail|ef=100", "graph_merged|ef=100"}) {
    ASSERT_TRUE(rows.count(name)) << name;
    EXPECT_GT(rows.at(name)["recall"].get<double>(), want - 0.03) << name;
  }
}

#ifdef RA_HAVE_FAISS
TEST(RetrievalEval, IvfAtEveryListIsExact) {
  RetrievalBenchConfig config;
  config.prefill = 400;
  config.k = 10;
  config.indexes = {"ivf"};
  const auto rows = run(config);
  const int nlist = 80;  // round(4 * sqrt(400))
  const auto& full = rows.at("ivf|nprobe=" + std::to_string(nlist));
  EXPECT_DOUBLE_EQ(full["recall"].get<double>(), 1.0);
  EXPECT_NEAR(full["scanned"].get<double>(), (400.0 + nlist) / 400.0, 1e-9);
}
#endif

// Per-layer figures: interpolation along a sweep, "not reached", and the comparison table.
TEST(RetrievalEval, ScannedAtRecallInterpolatesPerLayer) {
  std::map<std::string, RowAccumulator> rows;
  std::vector<std::string> order;
  auto add = [&](const std::string& index, const std::string& knob, int64_t layer, double recall, double scanned) {
    const std::string key = index + "|" + knob;
    if (!rows.count(key)) order.push_back(key);
    RowAccumulator& r = rows[key];
    r.index = index;
    r.knob = knob;
    r.queries += 10;
    r.recall_sum += 10 * recall;
    r.scanned_sum += 10 * scanned;
    auto& l = r.per_layer[layer];
    l.queries += 10;
    l.recall_sum += 10 * recall;
    l.scanned_sum += 10 * scanned;
  };
  // graph: layer 0 reaches 0.95 between its two knobs, layer 1 at the first; ivf: layer 1 never.
  add("graph", "ef=100", 0, 0.90, 0.02);
  add("graph", "ef=100", 1, 0.96, 0.03);
  add("graph", "ef=200", 0, 1.00, 0.04);
  add("graph", "ef=200", 1, 0.99, 0.05);
  add("ivf", "nprobe=1", 0, 0.95, 0.10);
  add("ivf", "nprobe=1", 1, 0.50, 0.10);
  EXPECT_NEAR(scanned_at_recall(rows, order, "graph", 0, 0.95), 0.03, 1e-12);
  EXPECT_NEAR(scanned_at_recall(rows, order, "graph", 1, 0.95), 0.03, 1e-12);
  EXPECT_NEAR(scanned_at_recall(rows, order, "ivf", 0, 0.95), 0.10, 1e-12);
  EXPECT_TRUE(std::isnan(scanned_at_recall(rows, order, "ivf", 1, 0.95)));
  EXPECT_TRUE(std::isnan(scanned_at_recall(rows, order, "hnsw", 0, 0.95)));
  // All layers: graph 0.93 then 0.995 (means over both layers) -> 0.025 + (0.02 / 0.065) * 0.02.
  EXPECT_NEAR(scanned_at_recall(rows, order, "graph", -1, 0.95), 0.025 + 0.02 / 0.065 * 0.02, 1e-9);
  const std::string table = layer_comparison_table(rows, order, {0.95});
  EXPECT_NE(table.find("3.33x"), std::string::npos) << table;  // layer 0: ivf 10% / graph 3%
  EXPECT_NE(table.find("-"), std::string::npos) << table;
  EXPECT_EQ(table.find("faiss/warm"), std::string::npos) << table;  // no decode-order rows, no column

  add("graph_warm", "ef=100", 0, 0.95, 0.025);
  add("graph_warm", "ef=100", 1, 0.95, 0.02);
  const std::string with_warm = layer_comparison_table(rows, order, {0.95});
  EXPECT_NE(with_warm.find("faiss/warm"), std::string::npos) << with_warm;
  EXPECT_NE(with_warm.find("4.00x"), std::string::npos) << with_warm;  // layer 0: ivf 10% / warm 2.5%
}

TEST(RetrievalEval, PrefillOutsideTheDumpIsAnError) {
  RetrievalBenchConfig config;
  config.prefill = 600;
  config.indexes = {"flat"};
  EXPECT_THROW(run(config), std::exception);
}

}  // namespace
}  // namespace ra::retriever
