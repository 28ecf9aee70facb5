// SessionTail (cpu_retriever/session_tail.h): a serving session's evicted tokens beside a shard. Merged
// into a shard's partial state, the tail gives exact attention over the union of the two key sets;
// rewind drops exactly the positions at or past its argument; rows are rounded to the store's dtype;
// an out-of-order append is refused.

#include "cpu_retriever/session_tail.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "common/error.h"
#include "common/partial_state.h"
#include "cpu_retriever/kv_dtype.h"

namespace ra::retriever {
namespace {

constexpr int64_t kDim = 8;
constexpr int64_t kKvHeads = 3;
constexpr float kScale = 0.35f;

std::vector<float> randoms(size_t n, std::mt19937_64& rng) {
  std::normal_distribution<float> g(0.f, 1.f);
  std::vector<float> out(n);
  for (float& x : out) x = g(rng);
  return out;
}

// Exact attention of q over rows [n][kDim] of keys and values: (lse, o).
float reference(const std::vector<float>& q, const std::vector<float>& k, const std::vector<float>& v, float* o) {
  const size_t n = k.size() / kDim;
  std::vector<float> scratch(n);
  return attend(q.data(), k.data(), v.data(), n, kDim, kDim, kScale, scratch, o);
}

// Token t's k, v for every kv head: [kKvHeads][kDim]; owned head h's row is rows[t][h].
struct Tokens {
  std::vector<std::vector<float>> k, v;
};

Tokens make_tokens(int n, std::mt19937_64& rng) {
  Tokens t;
  for (int i = 0; i < n; ++i) {
    t.k.push_back(randoms(kKvHeads * kDim, rng));
    t.v.push_back(randoms(kKvHeads * kDim, rng));
  }
  return t;
}

// Head h's rows of tokens [begin, end), concatenated: [end - begin][kDim].
std::vector<float> rows(const std::vector<std::vector<float>>& x, int64_t h, int begin, int end) {
  std::vector<float> out;
  for (int i = begin; i < end; ++i) out.insert(out.end(), x[i].begin() + h * kDim, x[i].begin() + (h + 1) * kDim);
  return out;
}

TEST(SessionTail, MergedIntoAShardsPartialItIsExactAttentionOverTheUnion) {
  std::mt19937_64 rng(5);
  const std::vector<int64_t> owned = {0, 2};
  const Tokens t = make_tokens(12, rng);
  SessionTail tail(static_cast<int64_t>(owned.size()), kDim, KvDtype::kF32);
  for (int i = 6; i < 12; ++i) tail.append(100 + i, t.k[i].data(), t.v[i].data(), owned);  // the session's tokens
  EXPECT_EQ(tail.rows(), 6);
  const std::vector<float> q = randoms(kDim, rng);
  SessionScratch scratch;
  for (size_t i = 0; i < owned.size(); ++i) {
    std::vector<float> o(kDim);
    float lse = reference(q, rows(t.k, owned[i], 0, 6), rows(t.v, owned[i], 0, 6), o.data());  // the shard's part
    SearchStats stats;
    lse = tail.merge_into(i, q.data(), kScale, lse, o.data(), scratch, &stats);
    std::vector<float> want(kDim);
    const float want_lse = reference(q, rows(t.k, owned[i], 0, 12), rows(t.v, owned[i], 0, 12), want.data());
    EXPECT_NEAR(lse, want_lse, 1e-5f);
    for (int64_t d = 0; d < kDim; ++d) EXPECT_NEAR(o[d], want[d], 1e-5f) << "head " << owned[i] << " dim " << d;
    EXPECT_EQ(stats.distance_computations, 6);
  }
  // An empty shard (lse = -inf, o = 0) gives the tail's own attention.
  std::vector<float> o(kDim, 0.f), want(kDim);
  const float lse = tail.merge_into(1, q.data(), kScale, kEmptyLse, o.data(), scratch, nullptr);
  EXPECT_NEAR(lse, reference(q, rows(t.k, 2, 6, 12), rows(t.v, 2, 6, 12), want.data()), 1e-5f);
  for (int64_t d = 0; d < kDim; ++d) EXPECT_NEAR(o[d], want[d], 1e-5f);
}

TEST(SessionTail, RewindDropsThePositionsAtOrPastItsArgumentAndKeepsTheRest) {
  std::mt19937_64 rng(9);
  const std::vector<int64_t> owned = {1};
  const Tokens t = make_tokens(8, rng);
  SessionTail tail(1, kDim, KvDtype::kF32);
  for (int i = 0; i < 8; ++i) tail.append(40 + i, t.k[i].data(), t.v[i].data(), owned);
  tail.rewind(45);  // keeps 40..44
  EXPECT_EQ(tail.rows(), 5);
  const std::vector<float> q = randoms(kDim, rng);
  SessionScratch scratch;
  std::vector<float> o(kDim, 0.f), want(kDim);
  float lse = tail.merge_into(0, q.data(), kScale, kEmptyLse, o.data(), scratch, nullptr);
  EXPECT_NEAR(lse, reference(q, rows(t.k, 1, 0, 5), rows(t.v, 1, 0, 5), want.data()), 1e-5f);
  for (int64_t d = 0; d < kDim; ++d) EXPECT_NEAR(o[d], want[d], 1e-5f);

  // Positions from 45 on may come again (another continuation of the same context).
  tail.append(45, t.k[7].data(), t.v[7].data(), owned);
  EXPECT_EQ(tail.rows(), 6);
  EXPECT_THROW(tail.append(45, t.k[7].data(), t.v[7].data(), owned), Error);  // not after 45 itself
  tail.rewind(0);
  EXPECT_TRUE(tail.empty());
  lse = tail.merge_into(0, q.data(), kScale, 1.5f, o.data(), scratch, nullptr);
  EXPECT_EQ(lse, 1.5f);  // an empty tail leaves the shard's state alone
  tail.append(3, t.k[0].data(), t.v[0].data(), owned);
  tail.clear();
  EXPECT_TRUE(tail.empty());
}

TEST(SessionTail, RowsAreRoundedToTheStoresDtype) {
  std::mt19937_64 rng(13);
  const std::vector<int64_t> owned = {0};
  const Tokens t = make_tokens(3, rng);
  SessionTail bf16_tail(1, kDim, KvDtype::kBF16);
  for (int i = 0; i < 3; ++i) bf16_tail.append(i, t.k[i].data(), t.v[i].data(), owned);
  std::vector<float> k = rows(t.k, 0, 0, 3), v = rows(t.v, 0, 0, 3);
  with_kv_elem(KvDtype::kBF16, [&](auto e) {
    using E = decltype(e);
    for (float& x : k) x = E::widen(E::narrow(x));
    for (float& x : v) x = E::widen(E::narrow(x));
  });
  const std::vector<float> q = randoms(kDim, rng);
  SessionScratch scratch;
  std::vector<float> o(kDim, 0.f), want(kDim);
  const float lse = bf16_tail.merge_into(0, q.data(), kScale, kEmptyLse, o.data(), scratch, nullptr);
  EXPECT_EQ(lse, reference(q, k, v, want.data()));  // the same rounded rows, the same arithmetic
  for (int64_t d = 0; d < kDim; ++d) EXPECT_EQ(o[d], want[d]);
}

}  // namespace
}  // namespace ra::retriever
