// The partial-state math of DESIGN §4 against direct softmax attention.

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "common/partial_state.h"

namespace ra {
namespace {

constexpr size_t kDim = 64;
constexpr float kInf = std::numeric_limits<float>::infinity();

struct KeySet {
  std::vector<float> keys;    // [n][kDim]
  std::vector<float> values;  // [n][kDim]
  size_t n = 0;
};

KeySet random_keys(size_t n, float key_scale, std::mt19937& rng) {
  std::normal_distribution<float> dist(0.0f, 1.0f);
  KeySet s;
  s.n = n;
  s.keys.resize(n * kDim);
  s.values.resize(n * kDim);
  for (float& x : s.keys) x = dist(rng) * key_scale;
  for (float& x : s.values) x = dist(rng);
  return s;
}

// Direct softmax attention in double precision: the reference.
std::vector<double> direct_attention(const std::vector<float>& q, const KeySet& s, float scale) {
  std::vector<double> scores(s.n);
  double m = -std::numeric_limits<double>::infinity();
  for (size_t j = 0; j < s.n; ++j) {
    double dot = 0;
    for (size_t d = 0; d < kDim; ++d) dot += double(q[d]) * s.keys[j * kDim + d];
    scores[j] = dot * scale;
    m = std::max(m, scores[j]);
  }
  double sum = 0;
  for (double& x : scores) sum += (x = std::exp(x - m));
  std::vector<double> o(kDim, 0.0);
  for (size_t j = 0; j < s.n; ++j) {
    for (size_t d = 0; d < kDim; ++d) o[d] += scores[j] / sum * s.values[j * kDim + d];
  }
  return o;
}

KeySet subset(const KeySet& s, const std::vector<size_t>& ids) {
  KeySet out;
  out.n = ids.size();
  for (size_t id : ids) {
    out.keys.insert(out.keys.end(), s.keys.begin() + id * kDim, s.keys.begin() + (id + 1) * kDim);
    out.values.insert(out.values.end(), s.values.begin() + id * kDim, s.values.begin() + (id + 1) * kDim);
  }
  return out;
}

double relative_error(const std::vector<float>& got, const std::vector<double>& want) {
  double num = 0, den = 0;
  for (size_t d = 0; d < want.size(); ++d) {
    num += (got[d] - want[d]) * (got[d] - want[d]);
    den += want[d] * want[d];
  }
  return std::sqrt(num / den);
}

struct PartialOut {
  float lse;
  std::vector<float> o;
};

PartialOut partial(const std::vector<float>& q, const KeySet& s, float scale) {
  PartialOut p{0.0f, std::vector<float>(kDim, 123.0f)};  // garbage that must be overwritten
  std::vector<float> scratch(s.n);
  p.lse = attend(q.data(), s.keys.data(), s.values.data(), s.n, kDim, kDim, scale, scratch, p.o.data());
  return p;
}

// Splitting a key set in two, in any way, and merging equals attention over the whole set.
class MergeSplitTest : public ::testing::TestWithParam<float> {};

TEST_P(MergeSplitTest, AnySplitMergesToDirectSoftmax) {
  const float key_scale = GetParam();  // large scales give score ranges of hundreds
  std::mt19937 rng(42);
  const float scale = 1.0f / std::sqrt(float(kDim));
  for (int trial = 0; trial < 200; ++trial) {
    const size_t n = 1 + rng() % 300;
    const KeySet all = random_keys(n, key_scale, rng);
    std::vector<float> q(kDim);
    std::normal_distribution<float> dist;
    for (float& x : q) x = dist(rng);

    // A random split, including empty and single-key halves.
    std::vector<size_t> ids(n);
    std::iota(ids.begin(), ids.end(), 0);
    std::shuffle(ids.begin(), ids.end(), rng);
    const size_t cut = trial % 10 == 0 ? 0 : trial % 10 == 1 ? 1 : trial % 10 == 2 ? n : rng() % (n + 1);
    const std::vector<size_t> a_ids(ids.begin(), ids.begin() + cut), b_ids(ids.begin() + cut, ids.end());

    PartialOut a = partial(q, subset(all, a_ids), scale);
    const PartialOut b = partial(q, subset(all, b_ids), scale);
    merge_into(a.lse, a.o.data(), b.lse, b.o.data(), kDim);

    const PartialOut whole = partial(q, all, scale);
    const std::vector<double> want = direct_attention(q, all, scale);
    ASSERT_LT(relative_error(a.o, want), 1e-5) << "trial " << trial << " n=" << n << " cut=" << cut;
    ASSERT_LT(relative_error(whole.o, want), 1e-5);
    ASSERT_NEAR(a.lse, whole.lse, 1e-5 * std::max(1.0f, std::fabs(whole.lse)));
  }
}

INSTANTIATE_TEST_SUITE_P(ScoreRanges, MergeSplitTest, ::testing::Values(0.1f, 1.0f, 10.0f, 60.0f));

TEST(PartialState, EmptySetIsMinusInfAndZero) {
  std::vector<float> q(kDim, 1.0f), o(kDim, 7.0f);
  const float lse = attend(q.data(), nullptr, nullptr, 0, kDim, kDim, 1.0f, {}, o.data());
  EXPECT_EQ(lse, -kInf);
  for (float x : o) EXPECT_EQ(x, 0.0f);
}

TEST(PartialState, MergingTwoEmptySetsStaysEmptyNeverNaN) {
  float lse_a = kEmptyLse;
  std::vector<float> o_a(kDim, 0.0f), o_b(kDim, 0.0f);
  merge_into(lse_a, o_a.data(), kEmptyLse, o_b.data(), kDim);
  EXPECT_EQ(lse_a, -kInf);
  for (float x : o_a) {
    EXPECT_FALSE(std::isnan(x));
    EXPECT_EQ(x, 0.0f);
  }
  EXPECT_EQ(logaddexp(kEmptyLse, kEmptyLse), -kInf);
}

TEST(PartialState, MergingEmptyIntoNonEmptyIsIdentityBothWays) {
  std::mt19937 rng(1);
  const KeySet s = random_keys(5, 1.0f, rng);
  std::vector<float> q(kDim, 0.3f);
  const PartialOut p = partial(q, s, 0.125f);
  std::vector<float> zero(kDim, 0.0f);

  PartialOut left = p;
  merge_into(left.lse, left.o.data(), kEmptyLse, zero.data(), kDim);
  EXPECT_EQ(left.lse, p.lse);
  EXPECT_EQ(left.o, p.o);

  float lse = kEmptyLse;
  std::vector<float> o(kDim, 0.0f);
  merge_into(lse, o.data(), p.lse, p.o.data(), kDim);
  EXPECT_EQ(lse, p.lse);
  EXPECT_EQ(o, p.o);
}

TEST(PartialState, SingleKeySetReturnsItsValueAndScore) {
  std::mt19937 rng(2);
  const KeySet s = random_keys(1, 1.0f, rng);
  std::vector<float> q(kDim, 0.5f);
  const float scale = 0.25f;
  const PartialOut p = partial(q, s, scale);
  float dot = 0.0f;
  for (size_t d = 0; d < kDim; ++d) dot += q[d] * s.keys[d];
  EXPECT_FLOAT_EQ(p.lse, dot * scale);  // lse of one score is that score
  for (size_t d = 0; d < kDim; ++d) EXPECT_FLOAT_EQ(p.o[d], s.values[d]);
}

TEST(PartialState, MaskedScoresOfMinusInfGetZeroWeight) {
  std::vector<float> scores = {-kInf, 2.0f, -kInf, 2.0f};
  const float lse = scores_to_weights(scores);
  EXPECT_FLOAT_EQ(lse, 2.0f + std::log(2.0f));
  EXPECT_EQ(scores[0], 0.0f);
  EXPECT_EQ(scores[2], 0.0f);
  EXPECT_FLOAT_EQ(scores[1], 0.5f);

  std::vector<float> all_masked = {-kInf, -kInf};
  EXPECT_EQ(scores_to_weights(all_masked), -kInf);
  EXPECT_EQ(all_masked[0], 0.0f);
  EXPECT_EQ(all_masked[1], 0.0f);
}

TEST(PartialState, HugeScoreGapDoesNotOverflow) {
  // Scores 1000 apart: exp would overflow without the max subtraction.
  std::vector<float> scores = {1000.0f, 0.0f, -1000.0f};
  const float lse = scores_to_weights(scores);
  EXPECT_FLOAT_EQ(lse, 1000.0f);
  EXPECT_FLOAT_EQ(scores[0], 1.0f);
  EXPECT_EQ(scores[2], 0.0f);

  // Merging partials whose lse differ by 1000 keeps the big one exactly.
  std::vector<float> oa(kDim, 1.0f), ob(kDim, -1.0f);
  float la = 1000.0f;
  merge_into(la, oa.data(), -1000.0f, ob.data(), kDim);
  EXPECT_FLOAT_EQ(la, 1000.0f);
  for (float x : oa) EXPECT_FLOAT_EQ(x, 1.0f);
}

}  // namespace
}  // namespace ra
