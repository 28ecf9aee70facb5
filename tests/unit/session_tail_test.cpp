// SessionTail (cpu_retriever/session_tail.h): a serving session's evicted tokens beside a shard. Merged
// into a shard's partial state, the tail gives exact attention over the union of the two key sets;
// rewind drops exactly the positions at or past its argument; rows are stored and attended as the
// shard's store does (every dtype, int8 included); an out-of-order append is refused, and so is a
// non-finite value on an int8 side.

#include "cpu_retriever/session_tail.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <random>
#include <vector>

#include "common/error.h"
#include "common/partial_state.h"
#include "cpu_retriever/kv_dtype.h"
#include "cpu_retriever/kv_store.h"

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

// A session row is stored in the shard store's dtypes and attended by the store's own kernel: the tail
// of a token gives bit for bit what a KvStore holding the same token gives, for every dtype pair.
TEST(SessionTail, RowsAreStoredAndAttendedAsTheShardsStoreDoes) {
  std::mt19937_64 rng(13);
  const std::vector<int64_t> owned = {0};
  const Tokens t = make_tokens(3, rng);
  const std::vector<float> q = randoms(kDim, rng);
  for (const KvDtypes dtypes : {KvDtypes(KvDtype::kBF16), KvDtypes(KvDtype::kF16), KvDtypes(KvDtype::kQ8),
                                KvDtypes(KvDtype::kQ8, KvDtype::kBF16), KvDtypes(KvDtype::kBF16, KvDtype::kQ8)}) {
    SessionTail tail(1, kDim, dtypes);
    for (int i = 0; i < 3; ++i) tail.append(i, t.k[i].data(), t.v[i].data(), owned);
    KvStore store(kDim, dtypes, 16);
    const std::vector<float> k = rows(t.k, 0, 0, 3), v = rows(t.v, 0, 0, 3);
    store.append(k.data(), v.data(), 3);
    SessionScratch scratch;
    std::vector<float> o(kDim, 0.f), want(kDim), weights(3);
    const float lse = tail.merge_into(0, q.data(), kScale, kEmptyLse, o.data(), scratch, nullptr);
    const float want_lse = store.attend_all(q.data(), kScale, weights, want.data());
    EXPECT_EQ(lse, want_lse) << kv_dtypes_name(dtypes);  // merged into an empty state: unchanged
    for (int64_t d = 0; d < kDim; ++d) EXPECT_EQ(o[d], want[d]) << kv_dtypes_name(dtypes) << " dim " << d;
  }
}

// An int8 side refuses a token with inf or NaN, naming the head, and keeps the tail as it was.
TEST(SessionTail, AnInt8TailRefusesNonFiniteValues) {
  std::mt19937_64 rng(17);
  const std::vector<int64_t> owned = {0, 2};
  Tokens t = make_tokens(2, rng);
  SessionTail tail(2, kDim, KvDtypes(KvDtype::kBF16, KvDtype::kQ8));
  tail.append(5, t.k[0].data(), t.v[0].data(), owned);
  t.v[1][2 * kDim + 3] = std::numeric_limits<float>::quiet_NaN();
  try {
    tail.append(6, t.k[1].data(), t.v[1].data(), owned);
    FAIL() << "took a NaN value";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("the value of kv head 2 at position 6: element 3 is nan"), std::string::npos)
        << e.what();
  }
  EXPECT_EQ(tail.rows(), 1);
  t.v[1][2 * kDim + 3] = 0.5f;
  tail.append(6, t.k[1].data(), t.v[1].data(), owned);
  EXPECT_EQ(tail.rows(), 2);
}

}  // namespace
}  // namespace ra::retriever
