// fit_scan_budget (cpu_retriever/scan_budget.h): the knob whose searches score a target fraction of
// the keys, measured on the index's own queries.
#include "cpu_retriever/scan_budget.h"

#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "common/error.h"
#include "cpu_retriever/flat_index.h"
#include "cpu_retriever/graph_index.h"

namespace ra::retriever {
namespace {

std::vector<float> gaussian(int64_t rows, int64_t dim, float shift, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> g(0.f, 1.f);
  std::vector<float> out(static_cast<size_t>(rows * dim));
  for (float& x : out) x = g(rng) + shift;
  return out;
}

constexpr int64_t kN = 4000, kDim = 32, kTrain = 400;

double mean_scanned(const KeyIndex& index, const std::vector<float>& queries, int64_t used, int k, int ef) {
  SearchParams p;
  p.k = k;
  p.ef = ef;
  SearchStats stats;
  std::vector<int64_t> ids(static_cast<size_t>(k));
  std::vector<float> scores(static_cast<size_t>(k));
  const int64_t n_q = static_cast<int64_t>(queries.size()) / kDim;
  for (int64_t i = n_q - used; i < n_q; ++i) index.search(queries.data() + i * kDim, p, ids.data(), scores.data(), &stats);
  return static_cast<double>(stats.distance_computations) / static_cast<double>(used);
}

TEST(ScanBudget, TheGraphsBeamIsTheOneWhoseCountBracketsTheTarget) {
  const std::vector<float> keys = gaussian(kN, kDim, 0.f, 1), train = gaussian(kTrain, kDim, 0.3f, 2);
  GraphBuildParams gp;
  gp.M = 12;
  gp.Kq = 16;
  gp.threads = 1;
  const GraphIndex graph(keys.data(), kN, kDim, train.data(), kTrain, gp);
  int last_ef = 0;
  for (const double fraction : {0.02, 0.05, 0.2}) {
    const ScanBudget b = fit_scan_budget(graph, ScanKnob::kEf, train.data(), kTrain, 20, fraction, 32);
    ASSERT_GT(b.ef, 0);
    EXPECT_EQ(b.nprobe, 0);
    // Measured, not assumed: the reported fraction is what the chosen beam scans on those queries, and
    // the target lies between the counts of the beams either side of it.
    const double target = fraction * kN;
    EXPECT_DOUBLE_EQ(b.scanned_fraction, mean_scanned(graph, train, 32, 20, b.ef) / kN);
    EXPECT_LE(b.ef > 1 ? mean_scanned(graph, train, 32, 20, b.ef - 1) : 0.0, target) << fraction;
    EXPECT_GE(mean_scanned(graph, train, 32, 20, b.ef + 1), target) << fraction;
    EXPECT_NEAR(b.scanned_fraction, fraction, 0.5 * fraction) << "ef " << b.ef;
    EXPECT_GT(b.ef, last_ef);  // a larger budget, a wider beam
    last_ef = b.ef;
    EXPECT_LT(b.evaluations, 40);
  }
}

TEST(ScanBudget, AFlatIndexScansEverythingWhateverTheKnob) {
  const std::vector<float> keys = gaussian(500, kDim, 0.f, 3), queries = gaussian(10, kDim, 0.f, 4);
  const FlatIndex flat(keys.data(), 500, kDim);
  const ScanBudget b = fit_scan_budget(flat, ScanKnob::kEf, queries.data(), 10, 10, 0.05);
  EXPECT_DOUBLE_EQ(b.scanned_fraction, 1.0);
}

TEST(ScanBudget, BadRequestsAreErrors) {
  const std::vector<float> keys = gaussian(100, kDim, 0.f, 5), queries = gaussian(4, kDim, 0.f, 6);
  const FlatIndex flat(keys.data(), 100, kDim);
  EXPECT_THROW(fit_scan_budget(flat, ScanKnob::kEf, queries.data(), 4, 10, 0.0), Error);
  EXPECT_THROW(fit_scan_budget(flat, ScanKnob::kEf, queries.data(), 4, 10, 1.5), Error);
  EXPECT_THROW(fit_scan_budget(flat, ScanKnob::kEf, nullptr, 0, 10, 0.1), Error);
  EXPECT_THROW(fit_scan_budget(flat, ScanKnob::kEf, queries.data(), 4, 0, 0.1), Error);
}

}  // namespace
}  // namespace ra::retriever
