// decode_attention (split-K flash-decoding, gpu_worker/backend/cuda/decode_attention.h) against a
// double-precision CPU reference computed from the same inputs (K/V rounded to the cache's dtype).
// Every slot at or past the valid count is NaN, so a kernel that reads one fails. Skips cleanly
// without a CUDA device.

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "common/error.h"
#include "gpu_worker/backend/cuda/cuda_check.h"
#include "gpu_worker/backend/cuda/decode_attention.h"
#include "gpu_worker/backend/cuda/static_set.h"
#include "tests/gpu/gpu_test_support.h"

namespace ra {
namespace {

using cuda::bfloat16;
using cuda::DecodeAttentionKernel;
using cuda::DecodeAttentionPlan;
using gpu_test::DeviceArray;

constexpr float kInf = std::numeric_limits<float>::infinity();

int device_sm_count() {
  int device = 0, count = 0;
  RA_CUDA_CHECK(cudaGetDevice(&device));
  RA_CUDA_CHECK(cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device));
  return count;
}

// One layer's attention geometry. window == 0: full attention; otherwise the static set (sinks + window).
struct Shape {
  int n_heads = 32;
  int n_kv_heads = 8;
  int head_dim = 128;
  int64_t capacity = 1024;
  int64_t sinks = 0;
  int64_t window = 0;

  std::string str() const {
    std::string s = "h=" + std::to_string(n_heads) + "/" + std::to_string(n_kv_heads) +
                    " d=" + std::to_string(head_dim) + " cap=" + std::to_string(capacity);
    if (window > 0) s += " S=" + std::to_string(sinks) + " W=" + std::to_string(window);
    return s;
  }
};

// Per query head: o [n_heads][head_dim] float32, lse [n_heads] float32 (natural log).
struct Attention {
  std::vector<float> o;
  std::vector<float> lse;
};

// Double-precision attention of every query head over cache slots [0, n).
//   q: [n_heads][head_dim]; k, v: [n_kv_heads][capacity][head_dim] (the values the kernel sees).
Attention reference_attention(const Shape& s, std::span<const float> q, std::span<const float> k,
                              std::span<const float> v, int64_t n, float scale) {
  const size_t hd = static_cast<size_t>(s.head_dim);
  Attention out{std::vector<float>(static_cast<size_t>(s.n_heads) * hd, 0.0f),
                std::vector<float>(static_cast<size_t>(s.n_heads), -kInf)};
  if (n <= 0) return out;
  const int group = s.n_heads / s.n_kv_heads;
  std::vector<double> scores(static_cast<size_t>(n));
  std::vector<double> o(hd);
  for (int h = 0; h < s.n_heads; ++h) {
    const float* qh = q.data() + h * hd;
    const size_t base = static_cast<size_t>(h / group) * static_cast<size_t>(s.capacity) * hd;
    double m = -std::numeric_limits<double>::infinity();
    for (int64_t j = 0; j < n; ++j) {
      const float* kj = k.data() + base + static_cast<size_t>(j) * hd;
      double dot = 0;
      for (size_t d = 0; d < hd; ++d) dot += static_cast<double>(qh[d]) * kj[d];
      scores[static_cast<size_t>(j)] = dot * scale;
      m = std::max(m, scores[static_cast<size_t>(j)]);
    }
    double sum = 0;
    for (int64_t j = 0; j < n; ++j) sum += std::exp(scores[static_cast<size_t>(j)] - m);
    const double lse = m + std::log(sum);
    std::fill(o.begin(), o.end(), 0.0);
    for (int64_t j = 0; j < n; ++j) {
      const double w = std::exp(scores[static_cast<size_t>(j)] - lse);
      const float* vj = v.data() + base + static_cast<size_t>(j) * hd;
      for (size_t d = 0; d < hd; ++d) o[d] += w * vj[d];
    }
    for (size_t d = 0; d < hd; ++d) out.o[h * hd + d] = static_cast<float>(o[d]);
    out.lse[static_cast<size_t>(h)] = static_cast<float>(lse);
  }
  return out;
}

// Options of one harness: the data's scale and the SM count handed to the planner.
struct Data {
  uint64_t seed = 1;
  float q_stddev = 1.0f;
  int sm_count = 0;  // 0: the device's
};

// Device buffers and host copies for one shape, planned once; run() writes a new position into
// device memory and launches with the same plan (as a replayed CUDA graph does).
template <typename T>
class Harness {
 public:
  Harness(const Shape& s, const Data& data = {})
      : shape_(s),
        plan_(cuda::plan_decode_attention(s.n_heads, s.n_kv_heads, s.head_dim, s.capacity, cuda::dtype_of<T>(),
                                          data.sm_count > 0 ? data.sm_count : device_sm_count())),
        scale_(1.0f / std::sqrt(static_cast<float>(s.head_dim))),
        q_(gpu_test::random_normal(q_elems(), data.seed, data.q_stddev)),
        k_typed_(gpu_test::to_type<T>(gpu_test::random_normal(cache_elems(), data.seed + 1))),
        v_typed_(gpu_test::to_type<T>(gpu_test::random_normal(cache_elems(), data.seed + 2))),
        k_(gpu_test::to_floats<T>(k_typed_)),
        v_(gpu_test::to_floats<T>(v_typed_)),
        d_q_(q_),
        d_k_(cache_elems()),
        d_v_(cache_elems()),
        d_o_(q_elems()),
        d_lse_(static_cast<size_t>(s.n_heads)),
        d_workspace_(std::max<size_t>(1, plan_.workspace_bytes)),
        d_position_(1) {
    RA_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  }
  ~Harness() { cudaStreamDestroy(stream_); }
  Harness(const Harness&) = delete;
  Harness& operator=(const Harness&) = delete;

  // Replaces the keys' rows `rows` (per kv head) by themselves times `factor`, rounded to T.
  void scale_keys(std::span<const int64_t> rows, float factor) {
    for (int kv = 0; kv < shape_.n_kv_heads; ++kv) {
      for (int64_t j : rows) {
        const size_t at = (static_cast<size_t>(kv) * shape_.capacity + j) * shape_.head_dim;
        for (int d = 0; d < shape_.head_dim; ++d) {
          const float x = k_[at + d] * factor;
          k_typed_[at + d] = gpu_test::to_type<T>(std::span<const float>(&x, 1))[0];
          k_[at + d] = gpu_test::to_floats<T>(std::span<const T>(&k_typed_[at + d], 1))[0];
        }
      }
    }
  }

  // Uploads the cache with every slot at or past `valid` set to NaN (0xFF bytes): never to be read.
  void upload_cache(int64_t valid) {
    d_k_.upload(k_typed_);
    d_v_.upload(v_typed_);
    valid = std::clamp<int64_t>(valid, 0, shape_.capacity);
    if (valid < shape_.capacity) {
      const size_t pitch = static_cast<size_t>(shape_.capacity) * shape_.head_dim * sizeof(T);
      const size_t width = static_cast<size_t>(shape_.capacity - valid) * shape_.head_dim * sizeof(T);
      const size_t offset = static_cast<size_t>(valid) * shape_.head_dim;
      RA_CUDA_CHECK(cudaMemset2D(d_k_.get() + offset, pitch, 0xFF, width, static_cast<size_t>(shape_.n_kv_heads)));
      RA_CUDA_CHECK(cudaMemset2D(d_v_.get() + offset, pitch, 0xFF, width, static_cast<size_t>(shape_.n_kv_heads)));
    }
    RA_CUDA_CHECK(cudaDeviceSynchronize());  // the copies ran on the legacy stream; ours does not wait for it
  }

  // Writes *position and poisons the outputs (NaN), so a stale or missing write cannot pass.
  void prepare(int64_t position) {
    d_position_.upload(std::vector<int64_t>{position});
    RA_CUDA_CHECK(cudaMemset(d_o_.get(), 0xFF, d_o_.size() * sizeof(float)));
    RA_CUDA_CHECK(cudaMemset(d_lse_.get(), 0xFF, d_lse_.size() * sizeof(float)));
    RA_CUDA_CHECK(cudaDeviceSynchronize());
  }

  cudaError_t launch(cudaStream_t stream) {
    return cuda::decode_attention<T>(plan_, d_q_.get(), d_k_.get(), d_v_.get(), d_position_.get(), shape_.sinks,
                                     shape_.window, scale_, d_o_.get(), d_lse_.get(), d_workspace_.get(), stream);
  }

  Attention result() {
    RA_CUDA_CHECK(cudaStreamSynchronize(stream_));
    return {d_o_.download(), d_lse_.download()};
  }

  // One direct launch at `position`.
  Attention run(int64_t position) {
    prepare(position);
    RA_CUDA_CHECK(launch(stream_));
    return result();
  }

  Attention reference(int64_t position) const {
    return reference_attention(shape_, q_, k_, v_, valid(position), scale_);
  }

  int64_t valid(int64_t position) const {
    return std::clamp<int64_t>(cuda::valid_slots(position, shape_.sinks, shape_.window), 0, shape_.capacity);
  }

  const DecodeAttentionPlan& plan() const { return plan_; }
  const Shape& shape() const { return shape_; }
  cudaStream_t stream() const { return stream_; }

 private:
  size_t q_elems() const { return static_cast<size_t>(shape_.n_heads) * shape_.head_dim; }
  size_t cache_elems() const {
    return static_cast<size_t>(shape_.n_kv_heads) * static_cast<size_t>(shape_.capacity) * shape_.head_dim;
  }

  Shape shape_;
  DecodeAttentionPlan plan_;
  float scale_;
  std::vector<float> q_;  // [n_heads][head_dim]
  std::vector<T> k_typed_, v_typed_;  // [n_kv_heads][capacity][head_dim], as uploaded
  std::vector<float> k_, v_;          // the same values as float, for the reference
  DeviceArray<float> d_q_;
  DeviceArray<T> d_k_, d_v_;
  DeviceArray<float> d_o_, d_lse_;
  DeviceArray<unsigned char> d_workspace_;
  DeviceArray<int64_t> d_position_;
  cudaStream_t stream_ = nullptr;
};

// Tolerances. The tensor-core path rounds the softmax weights to bf16 for PV (relative 2^-9 each)
// and keeps q to ~16 bits (hi + lo bf16 parts); the generic path is float32 throughout.
struct Tolerance {
  double o_nmse;
  double lse_abs;
  double lse_rel;
};
Tolerance tolerance_for(const DecodeAttentionPlan& plan) {
  if (plan.kernel == DecodeAttentionKernel::kTensorCore) return {5e-5, 2e-4, 2e-5};
  return {1e-7, 1e-4, 5e-6};
}

const char* kernel_name(const DecodeAttentionPlan& plan) {
  return plan.kernel == DecodeAttentionKernel::kTensorCore ? "tc" : "generic";
}

template <typename T>
void expect_matches(const Harness<T>& harness, const Attention& got, const Attention& want, int64_t position) {
  const DecodeAttentionPlan& plan = harness.plan();
  const Tolerance tol = tolerance_for(plan);
  const std::string shape = harness.shape().str() + " pos=" + std::to_string(position) + " " + kernel_name(plan);
  EXPECT_OP("decode_attention", shape, gpu_test::type_name<T>(), got.o, want.o, tol.o_nmse);
  for (size_t h = 0; h < want.lse.size(); ++h) {
    if (std::isinf(want.lse[h])) {
      EXPECT_EQ(got.lse[h], want.lse[h]) << shape << " head " << h;
    } else {
      EXPECT_NEAR(got.lse[h], want.lse[h], tol.lse_abs + tol.lse_rel * std::fabs(want.lse[h]))
          << shape << " head " << h;
    }
  }
}

// Runs every position with one plan (ascending, so each step only needs its own poison) and checks it.
template <typename T>
void check_positions(Harness<T>& harness, std::span<const int64_t> positions) {
  for (int64_t position : positions) {
    SCOPED_TRACE("position " + std::to_string(position));
    harness.upload_cache(harness.valid(position));
    expect_matches(harness, harness.run(position), harness.reference(position), position);
  }
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

const Shape kLlama3_8b{32, 8, 128, 40037};  // 32 query heads, 8 kv heads: groups of 4

// ---------------------------------------------------------------------------------------------------

TEST(DecodeAttentionGpu, PlanPicksKernelsAndRejectsUnsupportedShapes) {
  if (!ra::gpu_test::have_gpu()) GTEST_SKIP() << "no CUDA device";
  const auto llama = cuda::plan_decode_attention(32, 8, 128, 131072, cuda::DType::kBF16, 132);
  EXPECT_EQ(llama.kernel, DecodeAttentionKernel::kTensorCore);
  EXPECT_EQ(llama.group, 4);
  EXPECT_EQ(llama.max_splits, 33);  // 2 CTAs per SM × 132 SMs / 8 kv heads: one full wave
  EXPECT_GE(llama.workspace_bytes, llama.lse_offset + 33u * 32u * sizeof(float));
  EXPECT_GE(llama.lse_offset, 33u * 32u * 128u * sizeof(float));
  EXPECT_EQ(cuda::plan_decode_attention(32, 8, 128, 4096, cuda::DType::kF32, 132).kernel,
            DecodeAttentionKernel::kGeneric);
  EXPECT_EQ(cuda::plan_decode_attention(32, 2, 128, 4096, cuda::DType::kBF16, 132).kernel,
            DecodeAttentionKernel::kGeneric);  // group 16
  EXPECT_EQ(cuda::plan_decode_attention(4, 4, 32, 4096, cuda::DType::kBF16, 132).kernel,
            DecodeAttentionKernel::kGeneric);
  EXPECT_EQ(cuda::plan_decode_attention(8, 8, 64, 100, cuda::DType::kBF16, 132).max_splits, 2);  // ≥ 64 keys each
  EXPECT_THROW(cuda::plan_decode_attention(32, 8, 12, 4096, cuda::DType::kBF16, 132), Error);
  EXPECT_THROW(cuda::plan_decode_attention(32, 8, 264, 4096, cuda::DType::kBF16, 132), Error);
  EXPECT_THROW(cuda::plan_decode_attention(6, 4, 64, 4096, cuda::DType::kBF16, 132), Error);
  EXPECT_THROW(cuda::plan_decode_attention(8, 8, 64, 0, cuda::DType::kBF16, 132), Error);

  // The launcher refuses a plan made for another dtype, and a cache too small for the static set.
  Harness<float> harness(Shape{8, 2, 32, 64});
  EXPECT_EQ(cuda::decode_attention<bfloat16>(harness.plan(), nullptr, nullptr, nullptr, nullptr, 0, 0, 1.0f, nullptr,
                                             nullptr, nullptr, nullptr),
            cudaErrorInvalidValue);
  Harness<float> small(Shape{8, 2, 32, 64, 16, 64});  // 16 + 64 slots needed, 64 held
  EXPECT_EQ(small.launch(small.stream()), cudaErrorInvalidValue);
}

TEST(DecodeAttentionGpu, FullModeLlamaShapeBf16) {
  if (!ra::gpu_test::have_gpu()) GTEST_SKIP() << "no CUDA device";
  Harness<bfloat16> harness(kLlama3_8b);
  ASSERT_EQ(harness.plan().kernel, DecodeAttentionKernel::kTensorCore);
  const int64_t positions[] = {0, 1, 63, 64, 65, 1000, 40000};
  check_positions(harness, positions);
}

TEST(DecodeAttentionGpu, FullModeLlamaShapeF32) {
  if (!ra::gpu_test::have_gpu()) GTEST_SKIP() << "no CUDA device";
  Harness<float> harness(kLlama3_8b);
  const int64_t positions[] = {0, 1, 63, 64, 65, 1000, 40000};
  check_positions(harness, positions);
}

// Static set: before the sinks fill, before the window fills, exactly full, and long after the ring
// has wrapped (valid = sinks + window). The cache holds exactly sinks + window slots.
TEST(DecodeAttentionGpu, StaticModeBeforeAndAfterWrap) {
  if (!ra::gpu_test::have_gpu()) GTEST_SKIP() << "no CUDA device";
  for (const auto& [sinks, window] : {std::pair<int64_t, int64_t>{4, 16}, {128, 512}}) {
    const int64_t full = sinks + window;
    const int64_t positions[] = {0, sinks / 2, sinks - 1, sinks, sinks + window / 2, full - 2, full - 1, full,
                                 full + 1, 3 * full + 7, 100000};
    {
      SCOPED_TRACE("bf16 S=" + std::to_string(sinks) + " W=" + std::to_string(window));
      Harness<bfloat16> harness(Shape{32, 8, 128, full, sinks, window});
      check_positions(harness, positions);
    }
    {
      SCOPED_TRACE("f32 S=" + std::to_string(sinks) + " W=" + std::to_string(window));
      Harness<float> harness(Shape{8, 2, 64, full, sinks, window});
      check_positions(harness, positions);
    }
  }
}

// Every head_dim the generic path takes (multiples of 8 up to 256), group sizes 1..16, both dtypes,
// at valid counts around the tile (16) and split (64) granules.
template <typename T>
void check_head_dims_and_groups() {
  const int64_t positions[] = {0, 14, 15, 16, 62, 63, 64, 100, 640, 699};
  for (int head_dim : {8, 16, 24, 32, 64, 128, 256}) {
    for (int group : {1, 2, 3, 4, 8, 16}) {
      SCOPED_TRACE(std::string(gpu_test::type_name<T>()) + " head_dim " + std::to_string(head_dim) + " group " +
                   std::to_string(group));
      Harness<T> harness(Shape{2 * group, 2, head_dim, 700}, Data{static_cast<uint64_t>(head_dim * 31 + group)});
      check_positions(harness, positions);
    }
  }
}

TEST(DecodeAttentionGpu, HeadDimsAndGroupsBf16) {
  if (!ra::gpu_test::have_gpu()) GTEST_SKIP() << "no CUDA device";
  check_head_dims_and_groups<bfloat16>();
}

TEST(DecodeAttentionGpu, HeadDimsAndGroupsF32) {
  if (!ra::gpu_test::have_gpu()) GTEST_SKIP() << "no CUDA device";
  check_head_dims_and_groups<float>();
}

// The split count (from the SM count) changes how keys are dealt out, never the result: one split
// per kv head, a few, and the most the planner allows.
TEST(DecodeAttentionGpu, SplitCountsAgree) {
  if (!ra::gpu_test::have_gpu()) GTEST_SKIP() << "no CUDA device";
  const int64_t positions[] = {5, 100, 1500, 9999};
  for (int sm_count : {1, 3, 37, 1000}) {
    SCOPED_TRACE("sm_count " + std::to_string(sm_count));
    Harness<bfloat16> tc(Shape{32, 8, 128, 10000}, Data{7, 1.0f, sm_count});
    check_positions(tc, positions);
    Harness<float> generic(Shape{16, 4, 64, 10000}, Data{8, 1.0f, sm_count});
    check_positions(generic, positions);
  }
}

// Zero valid slots (position −1): lse = −inf and o = 0 exactly, with the whole cache NaN.
TEST(DecodeAttentionGpu, NoValidSlotGivesTheEmptyState) {
  if (!ra::gpu_test::have_gpu()) GTEST_SKIP() << "no CUDA device";
  auto check = [](auto& harness) {
    harness.upload_cache(0);
    const Attention got = harness.run(-1);
    for (float x : got.lse) EXPECT_EQ(x, -kInf);
    for (float x : got.o) ASSERT_EQ(x, 0.0f);
  };
  Harness<bfloat16> tc(Shape{32, 8, 128, 4096});
  check(tc);
  Harness<float> generic(Shape{12, 3, 40, 4096});
  check(generic);
}

// Large score magnitudes (scores ~ N(0, 40²), a few keys 8× longer, in different splits): the
// splits' lse differ by hundreds, which stresses the −inf-safe, max-shifted combine.
template <typename T>
void check_large_scores() {
  Harness<T> harness(Shape{32, 8, 128, 20037}, Data{21, 40.0f});
  const int64_t loud[] = {3, 777, 5000, 12345, 19999};
  harness.scale_keys(loud, 8.0f);
  const int64_t positions[] = {20, 900, 20000};
  check_positions(harness, positions);
}

TEST(DecodeAttentionGpu, LargeScoreMagnitudesBf16) {
  if (!ra::gpu_test::have_gpu()) GTEST_SKIP() << "no CUDA device";
  check_large_scores<bfloat16>();
}

TEST(DecodeAttentionGpu, LargeScoreMagnitudesF32) {
  if (!ra::gpu_test::have_gpu()) GTEST_SKIP() << "no CUDA device";
  check_large_scores<float>();
}

// Captured once in a CUDA graph and replayed at two positions (a new *position written between
// replays): bit-identical to direct launches at the same positions, and right against the reference.
template <typename T>
void check_graph_replay(const Shape& shape) {
  Harness<T> harness(shape);
  const int64_t positions[] = {100, shape.window > 0 ? 100000 : shape.capacity - 1};
  harness.upload_cache(harness.valid(positions[1]));  // the larger valid count: real data for both
  std::vector<Attention> direct;
  for (int64_t position : positions) direct.push_back(harness.run(position));

  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  RA_CUDA_CHECK(cudaStreamBeginCapture(harness.stream(), cudaStreamCaptureModeThreadLocal));
  const cudaError_t launched = harness.launch(harness.stream());
  RA_CUDA_CHECK(cudaStreamEndCapture(harness.stream(), &graph));
  RA_CUDA_CHECK(launched);
  RA_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
  for (size_t i = 0; i < 2; ++i) {
    harness.prepare(positions[i]);
    RA_CUDA_CHECK(cudaGraphLaunch(exec, harness.stream()));
    const Attention replayed = harness.result();
    EXPECT_TRUE(same_bits(replayed.o, direct[i].o)) << "position " << positions[i];
    EXPECT_TRUE(same_bits(replayed.lse, direct[i].lse)) << "position " << positions[i];
    expect_matches(harness, replayed, harness.reference(positions[i]), positions[i]);
  }
  RA_CUDA_CHECK(cudaGraphExecDestroy(exec));
  RA_CUDA_CHECK(cudaGraphDestroy(graph));
}

TEST(DecodeAttentionGpu, GraphReplayMatchesDirectLaunches) {
  if (!ra::gpu_test::have_gpu()) GTEST_SKIP() << "no CUDA device";
  check_graph_replay<bfloat16>(Shape{32, 8, 128, 20001});
  check_graph_replay<float>(Shape{8, 2, 64, 5001});
  check_graph_replay<bfloat16>(Shape{32, 8, 128, 640, 128, 512});
}

}  // namespace
}  // namespace ra
