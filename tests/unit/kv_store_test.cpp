// The retriever's 16-bit KV store: partial attention over retrieved rows equals the shared fp32 math
// (common/partial_state.h) on the rounded keys and values. Rows in the forms they travel in (bf16 keys,
// int8 values) fill a store as their float32 values do, all or none.

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "common/error.h"
#include "common/half.h"
#include "common/partial_state.h"
#include "common/wire_rows.h"
#include "cpu_retriever/kv_store.h"

namespace ra::retriever {
namespace {

constexpr int64_t kDim = 40;  // not a multiple of 8: exercises the tail of the dot product

struct Data {
  std::vector<float> k, v;
};

Data random_rows(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 2.0f);
  Data d{std::vector<float>(n * kDim), std::vector<float>(n * kDim)};
  for (float& x : d.k) x = dist(rng);
  for (float& x : d.v) x = dist(rng);
  return d;
}

std::vector<float> rounded(const std::vector<float>& x, KvDtype dtype) {
  std::vector<float> out(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    out[i] = dtype == KvDtype::kBF16  ? to_float(to_bf16(x[i]))
             : dtype == KvDtype::kF16 ? to_float(to_f16(x[i]))
                                      : x[i];
  }
  return out;
}

class KvStoreTest : public ::testing::TestWithParam<KvDtype> {};

TEST_P(KvStoreTest, AttendOverIdsEqualsSharedMathOnRoundedRows) {
  const KvDtype dtype = GetParam();
  const int64_t n = 300;
  const Data d = random_rows(n, 7);
  KvStore store(kDim, dtype);
  store.append(d.k.data(), d.v.data(), 100);  // two appends: rows keep their order
  store.append(d.k.data() + 100 * kDim, d.v.data() + 100 * kDim, n - 100);
  ASSERT_EQ(store.size(), n);

  const std::vector<float> k16 = rounded(d.k, dtype), v16 = rounded(d.v, dtype);
  std::vector<float> key(kDim);
  store.key(123, key.data());
  for (int64_t j = 0; j < kDim; ++j) ASSERT_EQ(key[j], k16[123 * kDim + j]);

  std::vector<float> q(kDim, 0.3f);
  const std::vector<int64_t> ids = {5, 299, 17, 100, 42};
  std::vector<float> sk, sv;  // the selected rows, contiguous, for ra::attend
  for (int64_t id : ids) {
    sk.insert(sk.end(), k16.begin() + id * kDim, k16.begin() + (id + 1) * kDim);
    sv.insert(sv.end(), v16.begin() + id * kDim, v16.begin() + (id + 1) * kDim);
  }
  std::vector<float> scratch(n), o(kDim), want(kDim);
  const float scale = 0.125f;
  const float lse = store.attend(q.data(), ids, scale, scratch, o.data());
  const float want_lse = attend(q.data(), sk.data(), sv.data(), ids.size(), kDim, kDim, scale, scratch, want.data());
  EXPECT_NEAR(lse, want_lse, 1e-5f * std::fabs(want_lse) + 1e-6f);
  for (int64_t j = 0; j < kDim; ++j) EXPECT_NEAR(o[j], want[j], 1e-5f * (1.0f + std::fabs(want[j])));

  // attend_all over every row equals attend over ids 0..n-1.
  std::vector<int64_t> all(n);
  for (int64_t i = 0; i < n; ++i) all[i] = i;
  std::vector<float> o_all(kDim), o_ids(kDim);
  const float lse_all = store.attend_all(q.data(), scale, scratch, o_all.data());
  const float lse_ids = store.attend(q.data(), all, scale, scratch, o_ids.data());
  EXPECT_EQ(lse_all, lse_ids);
  EXPECT_EQ(o_all, o_ids);
}

TEST_P(KvStoreTest, NoIdsIsTheEmptySet) {
  KvStore store(kDim, GetParam());
  const Data d = random_rows(3, 1);
  store.append(d.k.data(), d.v.data(), 3);
  std::vector<float> q(kDim, 1.0f), o(kDim, 9.0f), scratch(1);
  EXPECT_EQ(store.attend(q.data(), {}, 1.0f, scratch, o.data()), -std::numeric_limits<float>::infinity());
  for (float x : o) EXPECT_EQ(x, 0.0f);
}

INSTANTIATE_TEST_SUITE_P(Dtypes, KvStoreTest, ::testing::Values(KvDtype::kBF16, KvDtype::kF16, KvDtype::kF32));

TEST(KvStore, DtypeFollowsTheCheckpoint) {
  EXPECT_EQ(kv_dtype_for("F16"), KvDtype::kF16);
  EXPECT_EQ(kv_dtype_for("BF16"), KvDtype::kBF16);
  EXPECT_EQ(kv_dtype_for("F32"), KvDtype::kF32);
  EXPECT_EQ(kv_dtype_for("I8"), KvDtype::kBF16);
}

// An int8-key, int8-value store fed bf16 keys and int8 values (each side in its own wire form) holds
// exactly what it holds when fed the float32 values; a bad int8 scale among the values refuses the
// whole append, keys included.
TEST(KvStore, WireRowsPerSideFillTheStoreAsFloatsAndAllOrNone) {
  const int64_t n = 50;
  const Data d = random_rows(n, 9);
  std::vector<uint16_t> key_bits(d.k.size());
  std::vector<float> key_values(d.k.size());
  for (size_t e = 0; e < d.k.size(); ++e) {
    key_bits[e] = to_bf16(d.k[e]).bits;
    key_values[e] = to_float(bf16{key_bits[e]});
  }
  std::vector<std::byte> value_rows(static_cast<size_t>(n) * wire_row_bytes(WireRows::kQ8, kDim));
  ASSERT_LT(encode_wire_rows(WireRows::kQ8, d.v.data(), n, kDim, value_rows.data()), 0);
  KvStore wire(kDim, KvDtype::kQ8), floats(kDim, KvDtype::kQ8);
  wire.append(KvRows(KvDtype::kBF16, key_bits.data()), KvRows(KvDtype::kQ8, value_rows.data()), n);
  floats.append(key_values.data(), d.v.data(), n);
  const size_t row = kv_row_bytes(KvDtype::kQ8, kDim);
  EXPECT_EQ(std::memcmp(wire.keys()->data(), floats.keys()->data(), n * row), 0);
  EXPECT_EQ(std::memcmp(wire.values().data(), floats.values().data(), n * row), 0);

  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::memcpy(value_rows.data() + 7 * row + kDim, &nan, sizeof nan);  // row 7's scale
  try {
    wire.append(KvRows(KvDtype::kBF16, key_bits.data()), KvRows(KvDtype::kQ8, value_rows.data()), n);
    FAIL() << "took an int8 row with a NaN scale";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("value row 57: its int8 scale is nan"), std::string::npos) << e.what();
  }
  EXPECT_EQ(wire.size(), n);
  EXPECT_EQ(wire.keys()->size(), n);
  EXPECT_EQ(wire.values().size(), n);
  // int8 rows into a bf16 store: refused by name.
  KvStore bf16(kDim, KvDtype::kBF16);
  EXPECT_THROW(bf16.append(d.k.data(), KvRows(KvDtype::kQ8, value_rows.data()), n), Error);
  EXPECT_EQ(bf16.size(), 0);
}

}  // namespace
}  // namespace ra::retriever
