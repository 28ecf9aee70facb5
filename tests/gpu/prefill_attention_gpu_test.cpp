// prefill_attention (tensor-core kernel for bf16 head_dim 64/128, in both its 16- and 32-rows-per-warp
// layouts, and the CUDA-core kernel for the rest) against a double-precision causal attention on the
// CPU, computed from the same inputs (rounded to bf16 where T is bf16). Every cache holds NaN in the
// slots >= pos0 + n, which must never be read, and every output buffer has a poisoned guard after it,
// which must never be written. Skips cleanly without a CUDA device.
//
// Tolerances (normalised MSE, gpu_test::nmse), from a CPU emulation of the kernels' arithmetic on
// q, k, v ~ N(0, 1), head_dim 128, ~1000 keys per query:
//   bf16, 1e-5: rounding the output to bf16 alone gives ~2.8e-6; the tensor-core kernel also rounds
//     the softmax weights P to bf16 for P·V, another ~2.5e-6, so ~5e-6 is expected there.
//   tensor-core vs CUDA-core (both bf16 outputs), 2e-5: their errors are independent (~6e-6 expected).
//   f32, 1e-10: fp32 accumulation over <= 1500 keys gives ~1e-12 (4e-12 with a wide score range).

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <future>
#include <limits>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "gpu_worker/backend/cuda/cuda_check.h"
#include "gpu_worker/backend/cuda/prefill_attention.h"
#include "tests/gpu/gpu_test_support.h"

namespace ra {
namespace {

using cuda::bfloat16;
using gpu_test::DeviceArray;

constexpr double kTolBf16 = 1e-5;
constexpr double kTolBf16Pair = 2e-5;
constexpr double kTolF32 = 1e-10;
constexpr int64_t kGarbageSlots = 37;  // NaN slots past pos0 + n in every cache
constexpr size_t kGuard = 67;          // poisoned elements after every output

struct Shape {
  int n = 1;
  int64_t pos0 = 0;
  int n_heads = 1;
  int n_kv_heads = 1;
  int head_dim = 64;
  float qk_stddev = 1.0f;  // q, k ~ N(0, σ²); with scale 1/sqrt(head_dim) the scores have stddev σ²
  bool rising = false;     // scores drift upward with the slot: the running max moves on every tile

  int64_t capacity() const { return pos0 + n + kGarbageSlots; }
  float scale() const { return 1.0f / std::sqrt(static_cast<float>(head_dim)); }
  size_t q_elems() const { return static_cast<size_t>(n) * n_heads * head_dim; }
  size_t kv_elems() const { return static_cast<size_t>(n_kv_heads) * capacity() * head_dim; }
  std::string str() const {
    std::string s = "n=" + std::to_string(n) + " pos0=" + std::to_string(pos0) + " heads=" + std::to_string(n_heads) +
                    "/" + std::to_string(n_kv_heads) + " hd=" + std::to_string(head_dim);
    if (qk_stddev != 1.0f) s += " qk_sd=" + std::to_string(qk_stddev).substr(0, 4);
    if (rising) s += " rising";
    return s;
  }
};

// Host inputs as float, holding exactly the values T represents.
struct Inputs {
  std::vector<float> q;  // [n][n_heads][head_dim]
  std::vector<float> k;  // [n_kv_heads][capacity][head_dim], NaN in slots >= pos0 + n
  std::vector<float> v;  // [n_kv_heads][capacity][head_dim], NaN in slots >= pos0 + n
};

template <typename T>
std::vector<float> representable(const std::vector<float>& x) {
  return gpu_test::to_floats<T>(gpu_test::to_type<T>(x));
}

template <typename T>
Inputs make_inputs(const Shape& s, uint64_t seed) {
  Inputs in;
  in.q = gpu_test::random_normal(s.q_elems(), seed, s.qk_stddev, s.rising ? 0.5f : 0.0f);
  in.k = gpu_test::random_normal(s.kv_elems(), seed + 1, s.qk_stddev);
  in.v = gpu_test::random_normal(s.kv_elems(), seed + 2);
  const int64_t valid = s.pos0 + s.n;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (int kvh = 0; kvh < s.n_kv_heads; ++kvh) {
    for (int64_t slot = 0; slot < s.capacity(); ++slot) {
      const size_t row = (static_cast<size_t>(kvh) * s.capacity() + slot) * s.head_dim;
      for (int d = 0; d < s.head_dim; ++d) {
        if (slot >= valid) {
          in.k[row + d] = in.v[row + d] = nan;
        } else if (s.rising) {
          // With q's mean 0.5 this adds ~1.5 sqrt(head_dim) · slot / valid to the scaled score.
          in.k[row + d] += 3.0f * static_cast<float>(slot) / static_cast<float>(valid);
        }
      }
    }
  }
  in.q = representable<T>(in.q);
  in.k = representable<T>(in.k);
  in.v = representable<T>(in.v);
  return in;
}

// Causal softmax attention in double, one task per query head: o [n][n_heads][head_dim].
std::vector<float> reference(const Shape& s, const Inputs& in) {
  std::vector<float> out(s.q_elems());
  const int group = s.n_heads / s.n_kv_heads;
  const int hd = s.head_dim;
  const double scale = s.scale();
  auto one_head = [&](int h) {
    const size_t kv_base = static_cast<size_t>(h / group) * s.capacity() * hd;
    std::vector<double> scores;
    std::vector<double> acc(hd);
    for (int i = 0; i < s.n; ++i) {
      const float* q = in.q.data() + (static_cast<size_t>(i) * s.n_heads + h) * hd;
      const int64_t keys = s.pos0 + i + 1;  // slots [0, pos0 + i]
      scores.assign(keys, 0.0);
      double max_score = -std::numeric_limits<double>::infinity();
      for (int64_t j = 0; j < keys; ++j) {
        const float* k = in.k.data() + kv_base + j * hd;
        double dot = 0;
        for (int d = 0; d < hd; ++d) dot += static_cast<double>(q[d]) * k[d];
        scores[j] = dot * scale;
        max_score = std::max(max_score, scores[j]);
      }
      std::fill(acc.begin(), acc.end(), 0.0);
      double sum = 0;
      for (int64_t j = 0; j < keys; ++j) {
        const double w = std::exp(scores[j] - max_score);
        sum += w;
        const float* v = in.v.data() + kv_base + j * hd;
        for (int d = 0; d < hd; ++d) acc[d] += w * v[d];
      }
      float* o = out.data() + (static_cast<size_t>(i) * s.n_heads + h) * hd;
      for (int d = 0; d < hd; ++d) o[d] = static_cast<float>(acc[d] / sum);
    }
  };
  std::vector<std::future<void>> tasks;
  for (int h = 0; h < s.n_heads; ++h) tasks.push_back(std::async(std::launch::async, one_head, h));
  for (auto& t : tasks) t.get();
  return out;
}

// Which entry point runs: the dispatcher, or one kernel forced.
enum class Path { kDispatch, kGenericOnly, kTensorCore16, kTensorCore32 };

const char* op_name(Path path) {
  switch (path) {
    case Path::kDispatch:
      return "prefill_attention";
    case Path::kGenericOnly:
      return "prefill_attn_generic";
    case Path::kTensorCore16:
      return "prefill_attn_mma16";
    case Path::kTensorCore32:
      return "prefill_attn_mma32";
  }
  return "?";
}

template <typename T>
cudaError_t launch(Path path, const Shape& s, const T* q, const T* k, const T* v, T* o, cudaStream_t stream) {
  switch (path) {
    case Path::kDispatch:
      return cuda::prefill_attention<T>(q, k, v, o, s.n, s.pos0, s.n_heads, s.n_kv_heads, s.head_dim, s.capacity(),
                                        s.scale(), stream);
    case Path::kGenericOnly:
      return cuda::prefill_attention_generic<T>(q, k, v, o, s.n, s.pos0, s.n_heads, s.n_kv_heads, s.head_dim,
                                                s.capacity(), s.scale(), stream);
    case Path::kTensorCore16:
    case Path::kTensorCore32:
      if constexpr (std::is_same_v<T, bfloat16>) {
        return cuda::prefill_attention_tensor_core(path == Path::kTensorCore16 ? 16 : 32, q, k, v, o, s.n, s.pos0,
                                                   s.n_heads, s.n_kv_heads, s.head_dim, s.capacity(), s.scale(),
                                                   stream);
      }
      break;
  }
  return cudaErrorInvalidValue;
}

template <typename T>
bool all_poison(std::span<const T> x) {
  const auto* bytes = reinterpret_cast<const unsigned char*>(x.data());
  return std::all_of(bytes, bytes + x.size_bytes(), [](unsigned char b) { return b == 0xFF; });
}

// Runs the kernel on `in` (q at q_offset elements into its buffer) and returns o as floats.
template <typename T>
std::vector<float> run(const Shape& s, const Inputs& in, Path path, size_t q_offset = 0) {
  std::vector<T> q_host(q_offset, T{});
  const std::vector<T> q_typed = gpu_test::to_type<T>(in.q);
  q_host.insert(q_host.end(), q_typed.begin(), q_typed.end());
  DeviceArray<T> q(q_host);
  DeviceArray<T> k(gpu_test::to_type<T>(in.k));
  DeviceArray<T> v(gpu_test::to_type<T>(in.v));
  DeviceArray<T> o(s.q_elems() + kGuard);  // poisoned: unwritten outputs read as NaN
  const cudaError_t err = launch<T>(path, s, q.get() + q_offset, k.get(), v.get(), o.get(), nullptr);
  EXPECT_EQ(err, cudaSuccess) << op_name(path) << ": " << cudaGetErrorString(err);
  const std::vector<T> host = o.download();  // synchronises; an asynchronous fault throws here
  EXPECT_TRUE(all_poison<T>(std::span<const T>(host).subspan(s.q_elems()))) << "wrote past the output";
  return gpu_test::to_floats<T>(std::span<const T>(host).first(s.q_elems()));
}

// Every path in `paths` against one reference.
template <typename T>
void check(const Shape& s, uint64_t seed, std::initializer_list<Path> paths, double tolerance) {
  SCOPED_TRACE(s.str());
  const Inputs in = make_inputs<T>(s, seed);
  const std::vector<float> want = reference(s, in);
  for (Path path : paths) {
    const std::vector<float> got = run<T>(s, in, path);
    EXPECT_OP(op_name(path), s.str(), gpu_test::type_name<T>(), got, want, tolerance);
  }
}

constexpr std::initializer_list<Path> kTensorCorePaths = {Path::kTensorCore16, Path::kTensorCore32};

// (n, pos0) pairs: one query, a few, a whole number of 64-key tiles, a partial 128-query tile, many
// tiles; pos0 = 0, a tile-aligned and an unaligned chunk in the middle of a longer cache.
struct Chunk {
  int n;
  int64_t pos0;
};
std::vector<Chunk> chunks(std::initializer_list<int> ns, std::initializer_list<int64_t> pos0s) {
  std::vector<Chunk> out;
  for (int n : ns) {
    for (int64_t pos0 : pos0s) out.push_back({n, pos0});
  }
  return out;
}

TEST(PrefillAttentionGpu, TensorCorePathMatchesReference) {
  if (!gpu_test::have_gpu()) GTEST_SKIP() << "no CUDA device";
  uint64_t seed = 100;
  for (int head_dim : {64, 128}) {
    for (int group : {1, 4}) {
      for (const Chunk& c : chunks({1, 7, 64, 130, 1000}, {0, 64, 333})) {
        const Shape s{.n = c.n, .pos0 = c.pos0, .n_heads = 2 * group, .n_kv_heads = 2, .head_dim = head_dim};
        check<bfloat16>(s, seed += 3, kTensorCorePaths, kTolBf16);
      }
    }
  }
}

TEST(PrefillAttentionGpu, TensorCorePathWideScoreRange) {
  if (!gpu_test::have_gpu()) GTEST_SKIP() << "no CUDA device";
  for (int head_dim : {64, 128}) {
    // Scores with stddev 6.25 (a near one-hot softmax), and scores rising with the slot.
    check<bfloat16>({.n = 300, .pos0 = 1000, .n_heads = 8, .n_kv_heads = 2, .head_dim = head_dim, .qk_stddev = 2.5f}, 7,
                    kTensorCorePaths, kTolBf16);
    check<bfloat16>({.n = 260, .pos0 = 700, .n_heads = 8, .n_kv_heads = 2, .head_dim = head_dim, .rising = true}, 8,
                    kTensorCorePaths, kTolBf16);
  }
}

TEST(PrefillAttentionGpu, GenericPathFloat32MatchesReference) {
  if (!gpu_test::have_gpu()) GTEST_SKIP() << "no CUDA device";
  uint64_t seed = 200;
  for (int head_dim : {8, 16, 32, 64, 96, 128, 256}) {
    for (int group : {1, 3, 4}) {
      for (const Chunk& c : chunks({1, 7, 130}, {0, 333})) {
        const Shape s{.n = c.n, .pos0 = c.pos0, .n_heads = 2 * group, .n_kv_heads = 2, .head_dim = head_dim};
        check<float>(s, seed += 3, {Path::kDispatch}, kTolF32);
      }
    }
  }
  check<float>({.n = 1000, .pos0 = 0, .n_heads = 4, .n_kv_heads = 1, .head_dim = 32}, 250, {Path::kDispatch}, kTolF32);
  check<float>({.n = 200, .pos0 = 900, .n_heads = 6, .n_kv_heads = 2, .head_dim = 16, .qk_stddev = 3.0f}, 251,
               {Path::kDispatch}, kTolF32);
  check<float>({.n = 200, .pos0 = 900, .n_heads = 6, .n_kv_heads = 2, .head_dim = 128, .rising = true}, 252,
               {Path::kDispatch}, kTolF32);
}

TEST(PrefillAttentionGpu, GenericPathBf16MatchesReference) {
  if (!gpu_test::have_gpu()) GTEST_SKIP() << "no CUDA device";
  uint64_t seed = 300;
  // Head dims the tensor-core kernel does not take: the dispatcher sends them to the CUDA-core kernel.
  for (int head_dim : {8, 16, 32, 96, 256}) {
    for (int group : {1, 3, 4}) {
      for (const Chunk& c : chunks({1, 7, 130}, {0, 333})) {
        const Shape s{.n = c.n, .pos0 = c.pos0, .n_heads = 2 * group, .n_kv_heads = 2, .head_dim = head_dim};
        check<bfloat16>(s, seed += 3, {Path::kDispatch}, kTolBf16);
      }
    }
  }
  // The CUDA-core kernel called directly on the tensor-core head dims.
  for (int head_dim : {64, 128}) {
    check<bfloat16>({.n = 130, .pos0 = 333, .n_heads = 6, .n_kv_heads = 2, .head_dim = head_dim}, seed += 3,
                    {Path::kGenericOnly}, kTolBf16);
  }
}

// A Llama-3-8B-like chunk in the middle of a long cache: both kernels against the reference and
// against each other.
TEST(PrefillAttentionGpu, TensorCoreAndGenericPathsAgree) {
  if (!gpu_test::have_gpu()) GTEST_SKIP() << "no CUDA device";
  for (int head_dim : {128, 64}) {
    const Shape s{.n = 512, .pos0 = 1536, .n_heads = 32, .n_kv_heads = 8, .head_dim = head_dim};
    SCOPED_TRACE(s.str());
    const Inputs in = make_inputs<bfloat16>(s, 400 + head_dim);
    const std::vector<float> want = reference(s, in);
    const std::vector<float> generic = run<bfloat16>(s, in, Path::kGenericOnly);
    EXPECT_OP("prefill_attn_generic", s.str(), "bf16", generic, want, kTolBf16);
    for (Path path : {Path::kDispatch, Path::kTensorCore16, Path::kTensorCore32}) {
      const std::vector<float> mma = run<bfloat16>(s, in, path);
      EXPECT_OP(op_name(path), s.str(), "bf16", mma, want, kTolBf16);
      EXPECT_OP(std::string(op_name(path)) + "_vs_gen", s.str(), "bf16", mma, generic, kTolBf16Pair);
    }
  }
}

TEST(PrefillAttentionGpu, MisalignedPointersTakeTheGenericKernel) {
  if (!gpu_test::have_gpu()) GTEST_SKIP() << "no CUDA device";
  // q one bf16 (2 bytes) past a 16-byte boundary: the tensor-core kernel cannot take it.
  const Shape s{.n = 130, .pos0 = 333, .n_heads = 8, .n_kv_heads = 2, .head_dim = 128};
  SCOPED_TRACE(s.str());
  const Inputs in = make_inputs<bfloat16>(s, 500);
  const std::vector<float> want = reference(s, in);
  const std::vector<float> got = run<bfloat16>(s, in, Path::kDispatch, /*q_offset=*/1);
  EXPECT_OP("prefill_attn_unaligned", s.str(), "bf16", got, want, kTolBf16);
  // The tensor-core entry point refuses it.
  DeviceArray<bfloat16> q(s.q_elems() + 1), k(s.kv_elems()), v(s.kv_elems()), o(s.q_elems());
  EXPECT_EQ(cuda::prefill_attention_tensor_core(16, q.get() + 1, k.get(), v.get(), o.get(), s.n, s.pos0, s.n_heads,
                                                s.n_kv_heads, s.head_dim, s.capacity(), s.scale(), nullptr),
            cudaErrorInvalidValue);
}

TEST(PrefillAttentionGpu, RejectsInvalidArgumentsAndIgnoresEmptyChunks) {
  if (!gpu_test::have_gpu()) GTEST_SKIP() << "no CUDA device";
  DeviceArray<bfloat16> q(4096), k(4096), v(4096), o(4096);
  auto call = [&](int n, int64_t pos0, int n_heads, int n_kv_heads, int head_dim, int64_t capacity) {
    return cuda::prefill_attention<bfloat16>(q.get(), k.get(), v.get(), o.get(), n, pos0, n_heads, n_kv_heads, head_dim,
                                             capacity, 0.125f, nullptr);
  };
  EXPECT_EQ(call(1, 0, 1, 1, 64, 1), cudaSuccess);
  EXPECT_EQ(call(1, 0, 3, 2, 64, 1), cudaErrorInvalidValue);   // n_heads % n_kv_heads != 0
  EXPECT_EQ(call(1, 0, 1, 0, 64, 1), cudaErrorInvalidValue);   // no kv heads
  EXPECT_EQ(call(1, 0, 1, 1, 0, 1), cudaErrorInvalidValue);    // head_dim 0
  EXPECT_EQ(call(1, 0, 1, 1, 257, 1), cudaErrorInvalidValue);  // head_dim > 256
  EXPECT_EQ(call(4, 5, 1, 1, 64, 8), cudaErrorInvalidValue);   // pos0 + n > kv_capacity
  EXPECT_EQ(call(1, -1, 1, 1, 64, 8), cudaErrorInvalidValue);  // pos0 < 0
  EXPECT_EQ(call(-1, 0, 1, 1, 64, 8), cudaErrorInvalidValue);  // n < 0
  EXPECT_EQ(cuda::prefill_attention<bfloat16>(nullptr, k.get(), v.get(), o.get(), 1, 0, 1, 1, 64, 1, 0.125f, nullptr),
            cudaErrorInvalidValue);
  EXPECT_EQ(cuda::prefill_attention_generic<float>(nullptr, nullptr, nullptr, nullptr, 1, 0, 1, 1, 8, 1, 1.0f, nullptr),
            cudaErrorInvalidValue);
  auto tensor_core = [&](int rows_per_warp, int head_dim, float scale) {
    return cuda::prefill_attention_tensor_core(rows_per_warp, q.get(), k.get(), v.get(), o.get(), 1, 0, 1, 1, head_dim,
                                               1, scale, nullptr);
  };
  EXPECT_EQ(tensor_core(24, 64, 0.125f), cudaErrorInvalidValue);  // 16 or 32 rows per warp
  EXPECT_EQ(tensor_core(16, 96, 0.125f), cudaErrorInvalidValue);  // head_dim 64 or 128
  EXPECT_EQ(tensor_core(32, 64, -1.0f), cudaErrorInvalidValue);   // scale > 0
  EXPECT_EQ(tensor_core(32, 64, 0.125f), cudaSuccess);
  RA_CUDA_CHECK(cudaDeviceSynchronize());
  // n == 0 launches nothing and writes nothing.
  DeviceArray<bfloat16> untouched(64);
  EXPECT_EQ(
      cuda::prefill_attention<bfloat16>(q.get(), k.get(), v.get(), untouched.get(), 0, 0, 1, 1, 64, 1, 0.125f, nullptr),
      cudaSuccess);
  EXPECT_TRUE(all_poison<bfloat16>(untouched.download()));
}

// Every kernel replayed from a CUDA graph gives the eager result, bit for bit.
TEST(PrefillAttentionGpu, ReplaysInACudaGraph) {
  if (!gpu_test::have_gpu()) GTEST_SKIP() << "no CUDA device";
  const Shape s{.n = 130, .pos0 = 333, .n_heads = 8, .n_kv_heads = 2, .head_dim = 128};
  const Inputs in = make_inputs<bfloat16>(s, 600);
  DeviceArray<bfloat16> q(gpu_test::to_type<bfloat16>(in.q));
  DeviceArray<bfloat16> k(gpu_test::to_type<bfloat16>(in.k));
  DeviceArray<bfloat16> v(gpu_test::to_type<bfloat16>(in.v));
  cudaStream_t stream = nullptr;
  RA_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  for (Path path : {Path::kDispatch, Path::kGenericOnly, Path::kTensorCore16, Path::kTensorCore32}) {
    SCOPED_TRACE(std::string(op_name(path)) + " " + s.str());
    DeviceArray<bfloat16> eager(s.q_elems()), replayed(s.q_elems());
    // The first call also sets the kernel's shared-memory limit, which capture must not have to do.
    ASSERT_EQ(launch<bfloat16>(path, s, q.get(), k.get(), v.get(), eager.get(), stream), cudaSuccess);
    RA_CUDA_CHECK(cudaStreamSynchronize(stream));
    cudaGraph_t graph = nullptr;
    cudaGraphExec_t exec = nullptr;
    RA_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
    const cudaError_t captured = launch<bfloat16>(path, s, q.get(), k.get(), v.get(), replayed.get(), stream);
    RA_CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
    ASSERT_EQ(captured, cudaSuccess);
    RA_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
    RA_CUDA_CHECK(cudaGraphLaunch(exec, stream));
    RA_CUDA_CHECK(cudaGraphLaunch(exec, stream));
    RA_CUDA_CHECK(cudaStreamSynchronize(stream));
    const std::vector<bfloat16> a = eager.download();
    const std::vector<bfloat16> b = replayed.download();
    EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(bfloat16)), 0);
    RA_CUDA_CHECK(cudaGraphExecDestroy(exec));
    RA_CUDA_CHECK(cudaGraphDestroy(graph));
  }
  RA_CUDA_CHECK(cudaStreamDestroy(stream));
}

}  // namespace
}  // namespace ra
