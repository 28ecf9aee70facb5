// The row-wise and elementwise kernels of gpu_worker/backend/cuda/ops.h against CPU references:
// ra::cpu::rms_norm / silu_mul, ra::apply_rope with the cos/sin rows of ra::make_rope_table (including
// Llama-3.1 "llama3" scaling and positions near 2^20), and host mirrors of the KV cache for the append,
// eviction and copy kernels. Outputs start NaN-poisoned (DeviceArray) unless a test needs old contents.
//
// Tolerances (NMSE): exact copies and conversions 0. float32 outputs 1e-10 (only summation order or a
// 1-ulp expf differs; RoPE rounds like the CPU and is expected to match exactly). Outputs rounded to bf16
// 1e-5: a float32 difference of one ulp can move a value across a bf16 rounding boundary (2^-8 relative).

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "gpu_worker/backend/cpu/cpu_ops.h"
#include "gpu_worker/backend/cuda/ops.h"
#include "gpu_worker/backend/cuda/static_set.h"
#include "gpu_worker/model/model_config.h"
#include "gpu_worker/model/rope.h"
#include "tests/gpu/gpu_test_support.h"

namespace ra {
namespace {

using cuda::bfloat16;
using gpu_test::DeviceArray;

template <typename T>
double tolerance_for() {
  return std::is_same_v<T, float> ? 1e-10 : 1e-5;
}

// x rounded to T and back: what a T buffer holds after from_float<T>(x).
template <typename T>
std::vector<float> as_stored(const std::vector<float>& x) {
  return gpu_test::to_floats<T>(gpu_test::to_type<T>(x));
}

template <typename T>
std::vector<float> download_floats(const DeviceArray<T>& a) {
  return gpu_test::to_floats<T>(a.download());
}

// count elements of a device array from `offset` (without copying the rest of a large buffer).
template <typename T>
std::vector<float> download_range(const DeviceArray<T>& a, size_t offset, size_t count) {
  std::vector<T> out(count);
  RA_CUDA_CHECK(cudaDeviceSynchronize());
  RA_CUDA_CHECK(cudaMemcpy(out.data(), a.get() + offset, count * sizeof(T), cudaMemcpyDeviceToHost));
  return gpu_test::to_floats<T>(out);
}

bool all_nan(const std::vector<float>& v) {
  return std::all_of(v.begin(), v.end(), [](float x) { return std::isnan(x); });
}

// ------------------------------------------------------------------------------------------------
// Embedding, RMSNorm, SwiGLU.
// ------------------------------------------------------------------------------------------------

template <typename T>
void check_embed(int dim) {
  constexpr int kVocab = 50;
  const std::vector<float> table = as_stored<T>(gpu_test::random_normal(static_cast<size_t>(kVocab * dim), 1));
  const std::vector<int32_t> tokens = {0, 49, 7, 7, 23};
  DeviceArray<T> d_table(gpu_test::to_type<T>(table));
  DeviceArray<int32_t> d_tokens(tokens);
  DeviceArray<float> d_x(tokens.size() * static_cast<size_t>(dim));
  RA_CUDA_CHECK(cuda::embed_rows<T>(d_tokens.get(), d_table.get(), d_x.get(), static_cast<int>(tokens.size()), dim,
                                    nullptr));
  std::vector<float> want;
  for (int32_t t : tokens) want.insert(want.end(), table.begin() + t * dim, table.begin() + (t + 1) * dim);
  EXPECT_OP("embed_rows", "n=5 dim=" + std::to_string(dim), gpu_test::type_name<T>(), d_x.download(), want, 0.0);
}

TEST(OpsGpu, EmbedRowsCopiesTheTokensRows) {
  if (!gpu_test::have_gpu()) GTEST_SKIP() << "no CUDA device";
  for (int dim : {64, 100}) {
    check_embed<float>(dim);
    check_embed<bfloat16>(dim);
  }
}

template <typename T>
void check_rms_norm(int n, int dim) {
  constexpr float kEps = 1e-5f;
  const std::vector<float> x = gpu_test::random_normal(static_cast<size_t>(n) * dim, 2, 3.0f);
  const std::vector<float> w = gpu_test::random_normal(static_cast<size_t>(dim), 3, 0.2f, 1.0f);
  std::vector<float> want(x.size());
  cpu::rms_norm(x.data(), w.data(), want.data(), n, dim, kEps);
  DeviceArray<float> d_x(x), d_w(w);
  DeviceArray<T> d_y(x.size());
  RA_CUDA_CHECK(cuda::rms_norm_rows<T>(d_x.get(), d_w.get(), d_y.get(), n, dim, kEps, nullptr));
  EXPECT_OP("rms_norm_rows", "n=" + std::to_string(n) + " dim=" + std::to_string(dim), gpu_test::type_name<T>(),
            download_floats(d_y), as_stored<T>(want), tolerance_for<T>());
}

TEST(OpsGpu, RmsNormRowsMatchesCpu) {
  if (!gpu_test::have_gpu()) GTEST_SKIP() << "no CUDA device";
  for (int dim : {16, 100, 4096}) {
    check_rms_norm<float>(5, dim);
    check_rms_norm<bfloat16>(5, dim);
  }
}

template <typename T>
void check_swiglu(int n, int inter) {
  const std::vector<float> gate_up = gpu_test::random_normal(static_cast<size_t>(n) * 2 * inter, 4, 2.0f);
  std::vector<float> gate(static_cast<size_t>(n) * inter), up(gate.size());
  for (size_t e = 0; e < gate.size(); ++e) {
    gate[e] = gate_up[2 * e];  // row i, column j: gate_up[i][2j] = gate_up[2 (i·inter + j)]
    up[e] = gate_up[2 * e + 1];
  }
  cpu::silu_mul(gate.data(), up.data(), static_cast<int64_t>(gate.size()));
  DeviceArray<float> d_in(gate_up);
  DeviceArray<T> d_out(gate.size());
  RA_CUDA_CHECK(cuda::swiglu_rows<T>(d_in.get(), d_out.get(), n, inter, nullptr));
  EXPECT_OP("swiglu_rows", "n=" + std::to_string(n) + " inter=" + std::to_string(inter), gpu_test::type_name<T>(),
            download_floats(d_out), as_stored<T>(gate), tolerance_for<T>());
}

TEST(OpsGpu, SwigluRowsMatchesCpu) {
  if (!gpu_test::have_gpu()) GTEST_SKIP() << "no CUDA device";
  for (int inter : {7, 64, 14336}) {
    check_swiglu<float>(3, inter);
    check_swiglu<bfloat16>(3, inter);
  }
}

// ------------------------------------------------------------------------------------------------
// RoPE and the KV append.
// ------------------------------------------------------------------------------------------------

struct RopeGeometry {
  ModelConfig config;
  int n_heads;
  int n_kv_heads;
  int head_dim() const { return static_cast<int>(config.head_dim); }
  int width() const { return (n_heads + 2 * n_kv_heads) * head_dim(); }
};

RopeGeometry plain_geometry() {
  RopeGeometry g;
  g.config.head_dim = 64;
  g.config.rope_theta = 10000.0f;
  g.n_heads = 4;
  g.n_kv_heads = 2;
  return g;
}

// Llama-3.1-8B's RoPE: theta 500000, head_dim 128, llama3 scaling (factor 8, 1, 4, 8192).
RopeGeometry llama3_geometry() {
  RopeGeometry g;
  g.config.head_dim = 128;
  g.config.rope_theta = 500000.0f;
  g.config.rope_scaling.llama3 = true;
  g.config.rope_scaling.factor = 8.0f;
  g.config.rope_scaling.low_freq_factor = 1.0f;
  g.config.rope_scaling.high_freq_factor = 4.0f;
  g.config.rope_scaling.original_max_position_embeddings = 8192;
  g.n_heads = 8;
  g.n_kv_heads = 2;
  return g;
}

// The row of make_rope_table for one position, by the same formula (a full table up to 2^20 positions
// would take 512 MB); checked against make_rope_table itself for the first positions.
RopeTable rope_row(const ModelConfig& config, int64_t position) {
  const std::vector<float> inv = rope_inverse_frequencies(config);
  RopeTable t;
  t.half_dim = config.head_dim / 2;
  for (int64_t j = 0; j < t.half_dim; ++j) {
    const float angle = static_cast<float>(position) * inv[static_cast<size_t>(j)];
    t.cos.push_back(static_cast<float>(std::cos(static_cast<double>(angle))));
    t.sin.push_back(static_cast<float>(std::sin(static_cast<double>(angle))));
  }
  return t;
}

TEST(OpsGpu, RopeRowHelperEqualsTheCpuTable) {
  if (!gpu_test::have_gpu()) GTEST_SKIP() << "no CUDA device";
  const ModelConfig config = llama3_geometry().config;
  const RopeTable table = make_rope_table(config, 64);
  for (int64_t p = 0; p < 64; ++p) {
    const RopeTable row = rope_row(config, p);
    for (int64_t j = 0; j < table.half_dim; ++j) {
      ASSERT_EQ(row.cos[j], table.cos[p * table.half_dim + j]) << p << " " << j;
      ASSERT_EQ(row.sin[j], table.sin[p * table.half_dim + j]) << p << " " << j;
    }
  }
}

// head vector rotated at `position` by the CPU (apply_rope on the position's table row).
std::vector<float> cpu_rotated(const float* head, int head_dim, const RopeTable& row) {
  std::vector<float> out(head, head + head_dim);
  apply_rope(out.data(), row, 0);
  return out;
}

template <typename T>
void check_rope_prefill(const RopeGeometry& g, int64_t pos0, int n) {
  const int d = g.head_dim();
  const int64_t capacity = pos0 + n + 2;  // two slots past the written ones stay untouched
  const std::vector<float> qkv = gpu_test::random_normal(static_cast<size_t>(n) * g.width(), 5);
  const std::vector<float> inv = rope_inverse_frequencies(g.config);
  DeviceArray<float> d_qkv(qkv), d_inv(inv);
  DeviceArray<T> d_q(static_cast<size_t>(n) * g.n_heads * d);
  DeviceArray<T> d_k(static_cast<size_t>(g.n_kv_heads * capacity * d)), d_v(d_k.size());
  RA_CUDA_CHECK(cuda::rope_append_prefill<T>(d_qkv.get(), d_q.get(), d_k.get(), d_v.get(), n, pos0, g.n_heads,
                                             g.n_kv_heads, d, capacity, d_inv.get(), nullptr));

  std::vector<float> want_q, want_k, want_v, got_k, got_v;
  for (int i = 0; i < n; ++i) {
    const RopeTable row = rope_row(g.config, pos0 + i);
    const float* token = qkv.data() + static_cast<size_t>(i) * g.width();
    for (int h = 0; h < g.n_heads; ++h) {
      const auto r = cpu_rotated(token + h * d, d, row);
      want_q.insert(want_q.end(), r.begin(), r.end());
    }
    for (int kv = 0; kv < g.n_kv_heads; ++kv) {
      const auto r = cpu_rotated(token + (g.n_heads + kv) * d, d, row);
      want_k.insert(want_k.end(), r.begin(), r.end());
      const float* v = token + (g.n_heads + g.n_kv_heads + kv) * d;
      want_v.insert(want_v.end(), v, v + d);
    }
  }
  // Device k/v in the same (token, kv head) order; the slots past the prompt must still be NaN.
  for (int i = 0; i < n; ++i) {
    for (int kv = 0; kv < g.n_kv_heads; ++kv) {
      const size_t offset = static_cast<size_t>((kv * capacity + pos0 + i) * d);
      const auto k = download_range(d_k, offset, static_cast<size_t>(d));
      const auto v = download_range(d_v, offset, static_cast<size_t>(d));
      got_k.insert(got_k.end(), k.begin(), k.end());
      got_v.insert(got_v.end(), v.begin(), v.end());
    }
  }
  for (int kv = 0; kv < g.n_kv_heads; ++kv) {
    const size_t past = static_cast<size_t>((kv * capacity + pos0 + n) * d);
    EXPECT_TRUE(all_nan(download_range(d_k, past, 2 * static_cast<size_t>(d)))) << "k written past the prompt";
    EXPECT_TRUE(all_nan(download_range(d_v, past, 2 * static_cast<size_t>(d)))) << "v written past the prompt";
  }
  const std::string shape = "D=" + std::to_string(d) + (g.config.rope_scaling.llama3 ? " llama3" : "") +
                            " pos0=" + std::to_string(pos0) + " n=" + std::to_string(n);
  const char* type = gpu_test::type_name<T>();
  EXPECT_OP("rope_prefill q", shape, type, download_floats(d_q), as_stored<T>(want_q), tolerance_for<T>());
  EXPECT_OP("rope_prefill k", shape, type, got_k, as_stored<T>(want_k), tolerance_for<T>());
  EXPECT_OP("rope_prefill v", shape, type, got_v, as_stored<T>(want_v), 0.0);
}

TEST(OpsGpu, RopeAppendPrefillMatchesApplyRope) {
  if (!gpu_test::have_gpu()) GTEST_SKIP() << "no CUDA device";
  for (const RopeGeometry& g : {plain_geometry(), llama3_geometry()}) {
    for (int64_t pos0 : {int64_t{0}, int64_t{1000}, (int64_t{1} << 20) - 6}) {
      check_rope_prefill<float>(g, pos0, 6);
      check_rope_prefill<bfloat16>(g, pos0, 6);
    }
  }
}

// Host mirror of one layer's cache ([n_kv_heads][capacity][head_dim], as floats of T).
struct CacheMirror {
  int n_kv_heads, capacity, head_dim;
  std::vector<float> k, v;
  float* k_at(int g, int64_t slot) { return k.data() + (g * capacity + slot) * head_dim; }
  float* v_at(int g, int64_t slot) { return v.data() + (g * capacity + slot) * head_dim; }
};

// Decodes positions 0..steps-1 one by one (position advanced by increment_position on the device), and
// after each step checks q, the whole cache against a host mirror, and the eviction buffers: the old
// contents of the overwritten slot when evicted_position >= 0, untouched (sentinel) otherwise.
template <typename T>
void check_rope_decode_walk(const RopeGeometry& g, int64_t sinks, int64_t window, int64_t start, int steps) {
  const int d = g.head_dim();
  const int capacity = static_cast<int>(window > 0 ? sinks + window : start + steps);
  constexpr float kSentinel = 12345.0f;
  const std::vector<float> inv = rope_inverse_frequencies(g.config);
  CacheMirror mirror{g.n_kv_heads, capacity, d, {}, {}};
  mirror.k = as_stored<T>(gpu_test::random_normal(static_cast<size_t>(g.n_kv_heads) * capacity * d, 6));
  mirror.v = as_stored<T>(gpu_test::random_normal(mirror.k.size(), 7));
  DeviceArray<T> d_k(gpu_test::to_type<T>(mirror.k)), d_v(gpu_test::to_type<T>(mirror.v));
  DeviceArray<float> d_inv(inv), d_q(static_cast<size_t>(g.n_heads) * d);
  DeviceArray<float> d_ek(static_cast<size_t>(g.n_kv_heads) * d), d_ev(d_ek.size());
  DeviceArray<int64_t> d_pos(std::vector<int64_t>{start});
  const std::string shape = "D=" + std::to_string(d) + " sinks=" + std::to_string(sinks) +
                            " window=" + std::to_string(window) + " from=" + std::to_string(start);
  const char* type = gpu_test::type_name<T>();
  int evictions = 0;

  for (int s = 0; s < steps; ++s) {
    const int64_t p = start + s;
    const std::vector<float> qkv = gpu_test::random_normal(static_cast<size_t>(g.width()), 100 + s);
    DeviceArray<float> d_qkv(qkv);
    RA_CUDA_CHECK(cuda::fill_constant(d_ek.get(), static_cast<int64_t>(d_ek.size()), kSentinel, nullptr));
    RA_CUDA_CHECK(cuda::fill_constant(d_ev.get(), static_cast<int64_t>(d_ev.size()), kSentinel, nullptr));
    RA_CUDA_CHECK(cuda::rope_append_decode<T>(d_qkv.get(), d_q.get(), d_k.get(), d_v.get(), d_pos.get(), sinks,
                                              window, g.n_heads, g.n_kv_heads, d, capacity, d_inv.get(), d_ek.get(),
                                              d_ev.get(), nullptr));
    RA_CUDA_CHECK(cuda::increment_position(d_pos.get(), nullptr));

    const RopeTable row = rope_row(g.config, p);
    std::vector<float> want_q;
    for (int h = 0; h < g.n_heads; ++h) {
      const auto r = cpu_rotated(qkv.data() + h * d, d, row);
      want_q.insert(want_q.end(), r.begin(), r.end());
    }
    const int64_t slot = cuda::cache_slot(p, sinks, window);
    const bool evicts = cuda::evicted_position(p, sinks, window) >= 0;
    std::vector<float> want_ek(d_ek.size(), kSentinel), want_ev(d_ev.size(), kSentinel);
    for (int kv = 0; kv < g.n_kv_heads; ++kv) {
      if (evicts) {  // the old contents of the slot being overwritten
        std::copy_n(mirror.k_at(kv, slot), d, want_ek.begin() + kv * d);
        std::copy_n(mirror.v_at(kv, slot), d, want_ev.begin() + kv * d);
      }
      const auto k = as_stored<T>(cpu_rotated(qkv.data() + (g.n_heads + kv) * d, d, row));
      const float* v = qkv.data() + (g.n_heads + g.n_kv_heads + kv) * d;
      const auto v_stored = as_stored<T>(std::vector<float>(v, v + d));
      std::copy(k.begin(), k.end(), mirror.k_at(kv, slot));
      std::copy(v_stored.begin(), v_stored.end(), mirror.v_at(kv, slot));
    }
    evictions += evicts ? 1 : 0;
    const std::string at = shape + " p=" + std::to_string(p);
    EXPECT_OP("rope_decode q", at, type, d_q.download(), want_q, 1e-10);
    EXPECT_OP("rope_decode k cache", at, type, download_floats(d_k), mirror.k, tolerance_for<T>());
    EXPECT_OP("rope_decode v cache", at, type, download_floats(d_v), mirror.v, 0.0);
    ASSERT_EQ(d_ek.download(), want_ek) << at << (evicts ? ": evicted key" : ": key buffer touched without eviction");
    ASSERT_EQ(d_ev.download(), want_ev) << at << (evicts ? ": evicted value" : ": value buffer touched");
  }
  EXPECT_EQ(d_pos.download()[0], start + steps);
  if (window > 0 && start + steps > sinks + window) {
    EXPECT_GT(evictions, 0);
  }
}

TEST(OpsGpu, RopeAppendDecodeFullCache) {
  if (!gpu_test::have_gpu()) GTEST_SKIP() << "no CUDA device";
  check_rope_decode_walk<float>(plain_geometry(), 0, 0, 0, 12);
  check_rope_decode_walk<bfloat16>(plain_geometry(), 0, 0, 30, 5);
}

// Sinks 4, window 8: the ring [4, 12) wraps every 8 steps; evictions start at position 12.
TEST(OpsGpu, RopeAppendDecodeStaticSetEvictsAndWraps) {
  if (!gpu_test::have_gpu()) GTEST_SKIP() << "no CUDA device";
  check_rope_decode_walk<float>(plain_geometry(), 4, 8, 0, 41);
  check_rope_decode_walk<bfloat16>(plain_geometry(), 4, 8, 0, 41);
  check_rope_decode_walk<float>(llama3_geometry(), 128, 512, (int64_t{1} << 20) - 3, 6);  // near 1M positions
  check_rope_decode_walk<bfloat16>(llama3_geometry(), 128, 512, 5000, 4);
}

// Full attention at position ~1M: slot = position in a large cache; null eviction buffers are allowed.
template <typename T>
void check_rope_decode_far(int64_t position) {
  RopeGeometry g = llama3_geometry();
  g.n_kv_heads = 1;
  const int d = g.head_dim();
  const int64_t capacity = position + 1;
  const std::vector<float> qkv = gpu_test::random_normal(static_cast<size_t>(g.width()), 9);
  DeviceArray<float> d_qkv(qkv), d_inv(rope_inverse_frequencies(g.config)), d_q(static_cast<size_t>(g.n_heads) * d);
  DeviceArray<T> d_k(static_cast<size_t>(capacity * d)), d_v(d_k.size());
  DeviceArray<int64_t> d_pos(std::vector<int64_t>{position});
  RA_CUDA_CHECK(cuda::rope_append_decode<T>(d_qkv.get(), d_q.get(), d_k.get(), d_v.get(), d_pos.get(), 0, 0,
                                            g.n_heads, g.n_kv_heads, d, capacity, d_inv.get(), nullptr, nullptr,
                                            nullptr));
  const RopeTable row = rope_row(g.config, position);
  std::vector<float> want_q;
  for (int h = 0; h < g.n_heads; ++h) {
    const auto r = cpu_rotated(qkv.data() + h * d, d, row);
    want_q.insert(want_q.end(), r.begin(), r.end());
  }
  const auto want_k = as_stored<T>(cpu_rotated(qkv.data() + g.n_heads * d, d, row));
  const std::string shape = "D=128 llama3 full p=" + std::to_string(position);
  EXPECT_OP("rope_decode q", shape, gpu_test::type_name<T>(), d_q.download(), want_q, 1e-10);
  EXPECT_OP("rope_decode k", shape, gpu_test::type_name<T>(),
            download_range(d_k, static_cast<size_t>(position * d), static_cast<size_t>(d)), want_k,
            tolerance_for<T>());
  EXPECT_TRUE(all_nan(download_range(d_k, static_cast<size_t>((position - 1) * d), static_cast<size_t>(d))));

  // The same step with its rotation computed once by rope_cos_sin_decode (as the backend does for all
  // layers): bit-identical q and k.
  const std::vector<float> q1 = d_q.download();
  const auto k1 = download_range(d_k, static_cast<size_t>(position * d), static_cast<size_t>(d));
  DeviceArray<float> d_cs(static_cast<size_t>(d));
  RA_CUDA_CHECK(cuda::rope_cos_sin_decode(d_pos.get(), d_inv.get(), d, d_cs.get(), nullptr));
  RA_CUDA_CHECK(cuda::rope_append_decode<T>(d_qkv.get(), d_q.get(), d_k.get(), d_v.get(), d_pos.get(), 0, 0,
                                            g.n_heads, g.n_kv_heads, d, capacity, d_inv.get(), nullptr, nullptr,
                                            nullptr, d_cs.get()));
  EXPECT_EQ(d_q.download(), q1);
  EXPECT_EQ(download_range(d_k, static_cast<size_t>(position * d), static_cast<size_t>(d)), k1);
}

TEST(OpsGpu, RopeAppendDecodeAtAMillionPositions) {
  if (!gpu_test::have_gpu()) GTEST_SKIP() << "no CUDA device";
  check_rope_decode_far<float>((int64_t{1} << 20) - 1);
  check_rope_decode_far<bfloat16>(1'000'003);
}

TEST(OpsGpu, RopeAppendRejectsBadShapes) {
  if (!gpu_test::have_gpu()) GTEST_SKIP() << "no CUDA device";
  DeviceArray<float> buf(1024);
  DeviceArray<int64_t> pos(1);
  float* f = buf.get();
  EXPECT_EQ(cuda::rope_append_prefill<float>(f, f, f, f, 4, 10, 1, 1, 8, 12, f, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(cuda::rope_append_prefill<float>(f, f, f, f, 1, 0, 1, 1, 7, 12, f, nullptr), cudaErrorInvalidValue);
  EXPECT_EQ(cuda::rope_append_decode<float>(f, f, f, f, pos.get(), 4, 8, 1, 1, 8, 11, f, f, f, nullptr),
            cudaErrorInvalidValue);  // capacity below sinks + window
  EXPECT_EQ(cuda::rope_append_decode<float>(f, f, f, f, pos.get(), 4, 8, 1, 1, 8, 12, f, nullptr, nullptr, nullptr),
            cudaErrorInvalidValue);  // a window needs the eviction buffers
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
}

// ------------------------------------------------------------------------------------------------
// Copies, conversions, fills.
// ------------------------------------------------------------------------------------------------

template <typename T>
void check_copy_kv_slots(int head_dim) {
  constexpr int kHeads = 3, kSrcCap = 50, kSrcBegin = 10, kCount = 7, kDstCap = 20, kDstBegin = 5;
  const auto src = as_stored<T>(gpu_test::random_normal(static_cast<size_t>(kHeads * kSrcCap * head_dim), 10));
  auto dst = as_stored<T>(gpu_test::random_normal(static_cast<size_t>(kHeads * kDstCap * head_dim), 11));
  DeviceArray<T> d_src(gpu_test::to_type<T>(src)), d_dst(gpu_test::to_type<T>(dst));
  RA_CUDA_CHECK(cuda::copy_kv_slots<T>(d_src.get(), kSrcCap, kSrcBegin, d_dst.get(), kDstCap, kDstBegin, kCount,
                                       kHeads, head_dim, nullptr));
  for (int g = 0; g < kHeads; ++g) {
    std::copy_n(src.begin() + (g * kSrcCap + kSrcBegin) * head_dim, kCount * head_dim,
                dst.begin() + (g * kDstCap + kDstBegin) * head_dim);
  }
  EXPECT_OP("copy_kv_slots", "heads=3 D=" + std::to_string(head_dim) + " count=7", gpu_test::type_name<T>(),
            download_floats(d_dst), dst, 0.0);
}

TEST(OpsGpu, CopyKvSlotsMovesExactlyTheRows) {
  if (!gpu_test::have_gpu()) GTEST_SKIP() << "no CUDA device";
  for (int head_dim : {128, 3}) {  // 16-byte rows, and rows that are not
    check_copy_kv_slots<float>(head_dim);
    check_copy_kv_slots<bfloat16>(head_dim);
  }
}

template <typename T>
void check_conversions() {
  constexpr int64_t kN = 1'000'003;
  const std::vector<float> x = gpu_test::random_normal(kN, 12, 10.0f);
  DeviceArray<float> d_x(x), d_back(kN);
  DeviceArray<T> d_t(kN);
  RA_CUDA_CHECK(cuda::from_float_array<T>(d_x.get(), d_t.get(), kN, nullptr));
  RA_CUDA_CHECK(cuda::to_float_array<T>(d_t.get(), d_back.get(), kN, nullptr));
  EXPECT_OP("from_float_array", "n=1000003", gpu_test::type_name<T>(), download_floats(d_t), as_stored<T>(x), 0.0);
  EXPECT_OP("to_float_array", "n=1000003", gpu_test::type_name<T>(), d_back.download(), as_stored<T>(x), 0.0);
}

TEST(OpsGpu, ConversionsRoundToNearestEven) {
  if (!gpu_test::have_gpu()) GTEST_SKIP() << "no CUDA device";
  check_conversions<float>();
  check_conversions<bfloat16>();
}

TEST(OpsGpu, FillRandomIsDeterministicAndRoughlyNormal) {
  if (!gpu_test::have_gpu()) GTEST_SKIP() << "no CUDA device";
  constexpr int64_t kN = (1 << 20) + 3;
  constexpr float kScale = 0.02f;
  DeviceArray<float> a(kN), b(kN), c(kN);
  RA_CUDA_CHECK(cuda::fill_random<float>(a.get(), kN, kScale, 42, nullptr));
  RA_CUDA_CHECK(cuda::fill_random<float>(b.get(), kN, kScale, 42, nullptr));
  RA_CUDA_CHECK(cuda::fill_random<float>(c.get(), kN, kScale, 43, nullptr));
  const auto va = a.download(), vb = b.download(), vc = c.download();
  EXPECT_EQ(va, vb);
  EXPECT_NE(va, vc);
  double sum = 0, sum_sq = 0;
  for (float v : va) {
    ASSERT_TRUE(std::isfinite(v));
    ASSERT_LE(std::fabs(v), 3.5f * kScale);  // the Irwin–Hall sum of four is bounded by 2·sqrt(3)
    sum += v;
    sum_sq += static_cast<double>(v) * v;
  }
  const double mean = sum / kN, stddev = std::sqrt(sum_sq / kN - mean * mean);
  EXPECT_NEAR(mean, 0.0, 0.01 * kScale);
  EXPECT_NEAR(stddev, kScale, 0.01 * kScale);

  DeviceArray<bfloat16> h(1000);
  RA_CUDA_CHECK(cuda::fill_random<bfloat16>(h.get(), 1000, kScale, 42, nullptr));
  EXPECT_EQ(download_floats(h), as_stored<bfloat16>(std::vector<float>(va.begin(), va.begin() + 1000)));
}

// More than 2^31 elements (4 GiB of bf16): every element, up to the last, is written.
TEST(OpsGpu, FillRandomCoversArraysBeyondTwoToThe31) {
  if (!gpu_test::have_gpu()) GTEST_SKIP() << "no CUDA device";
  constexpr int64_t kN = (int64_t{1} << 31) + 1001;
  size_t free_bytes = 0, total_bytes = 0;
  RA_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
  if (free_bytes < static_cast<size_t>(kN) * sizeof(bfloat16) + (size_t{1} << 30)) {
    GTEST_SKIP() << "needs 5 GiB of free device memory";
  }
  DeviceArray<bfloat16> big(static_cast<size_t>(kN));  // NaN-poisoned
  RA_CUDA_CHECK(cuda::fill_random<bfloat16>(big.get(), kN, 1.0f, 5, nullptr));
  for (size_t offset : {size_t{0}, (size_t{1} << 31) - 1000, static_cast<size_t>(kN) - 2000}) {
    const auto v = download_range(big, offset, 2000);
    EXPECT_TRUE(std::none_of(v.begin(), v.end(), [](float x) { return std::isnan(x); })) << "offset " << offset;
    EXPECT_GT(*std::max_element(v.begin(), v.end()), *std::min_element(v.begin(), v.end())) << "offset " << offset;
  }
}

TEST(OpsGpu, FillConstantAndIncrementPosition) {
  if (!gpu_test::have_gpu()) GTEST_SKIP() << "no CUDA device";
  DeviceArray<float> a(1001);
  RA_CUDA_CHECK(cuda::fill_constant(a.get(), 1001, -2.5f, nullptr));
  EXPECT_EQ(a.download(), std::vector<float>(1001, -2.5f));
  DeviceArray<int64_t> pos(std::vector<int64_t>{(int64_t{1} << 33) + 41});
  for (int i = 0; i < 3; ++i) RA_CUDA_CHECK(cuda::increment_position(pos.get(), nullptr));
  EXPECT_EQ(pos.download()[0], (int64_t{1} << 33) + 44);
}

}  // namespace
}  // namespace ra
