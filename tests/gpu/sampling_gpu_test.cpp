// ra::cuda::sample_token against the CPU Sampler (gpu_worker/decode/sampler.h): the same logits and
// (seed, step) must give the same token. Both sides compute the same fixed-point integer weights, so
// the comparison is exact (no tolerance): a mismatch is a bug, except if a GPU and a host double exp()
// rounded to different floats at a weight that decides the draw (probability ~1e-9 per element, and the
// logits below are spread out, without near-ties, to keep that remote).

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "common/sample_uniform.h"
#include "gpu_worker/backend/cuda/sampling.h"
#include "gpu_worker/decode/sampler.h"
#include "tests/gpu/gpu_test_support.h"

namespace ra {
namespace {

using gpu_test::DeviceArray;

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// Distinct logits without near-ties: a shuffled grid over [-spread/2, spread/2).
std::vector<float> grid_logits(int vocab, float spread, uint32_t seed) {
  std::vector<float> l(static_cast<size_t>(vocab));
  for (int i = 0; i < vocab; ++i) l[static_cast<size_t>(i)] = spread * (static_cast<float>(i) / vocab - 0.5f);
  std::shuffle(l.begin(), l.end(), std::mt19937(seed));
  return l;
}

// The device side of one sampling call site: logits (with an optional leading pad to misalign them),
// params, the step counter and the output token.
struct Rig {
  Rig(const std::vector<float>& logits, const SamplingParams& p, uint64_t first_step = 0, int pad = 0)
      : vocab(static_cast<int>(logits.size())),
        offset(pad),
        d_logits(padded(logits, pad)),
        d_params(std::vector<SamplingParams>{p}),
        d_step(std::vector<uint64_t>{first_step}),
        d_out(1) {}

  static std::vector<float> padded(const std::vector<float>& logits, int pad) {
    std::vector<float> v(static_cast<size_t>(pad), 0.0f);
    v.insert(v.end(), logits.begin(), logits.end());
    return v;
  }
  cudaError_t launch(cudaStream_t stream = nullptr) const {
    return cuda::sample_token(d_logits.get() + offset, vocab, d_params.get(), d_step.get(), d_out.get(), stream);
  }
  int32_t sample() const {
    RA_CUDA_CHECK(launch());
    return d_out.download()[0];
  }
  uint64_t step() const { return d_step.download()[0]; }

  int vocab;
  int offset;
  DeviceArray<float> d_logits;
  DeviceArray<SamplingParams> d_params;
  DeviceArray<uint64_t> d_step;
  DeviceArray<int32_t> d_out;
};

std::string describe(const SamplingParams& p, int vocab) {
  return "T=" + std::to_string(p.temperature) + " top_p=" + std::to_string(p.top_p) +
         " vocab=" + std::to_string(vocab);
}

// `steps` draws from one logits vector on both sides.
void expect_same_tokens(const std::vector<float>& logits, const SamplingParams& p, int steps, int pad = 0) {
  Rig rig(logits, p, 0, pad);
  Sampler cpu(p);
  for (int k = 0; k < steps; ++k) {
    const int32_t want = cpu.next(logits);
    ASSERT_EQ(rig.sample(), want) << describe(p, rig.vocab) << " step " << k << (pad ? " misaligned" : "");
  }
  EXPECT_EQ(rig.step(), static_cast<uint64_t>(steps));
}

TEST(SamplingGpu, MatchesCpuSamplerOverManySteps) {
  if (!gpu_test::have_gpu()) GTEST_SKIP() << "no CUDA device";
  const std::vector<SamplingParams> configs = {
      {0.7f, 1.0f, 1},  {1.0f, 0.9f, 2},  {1.3f, 0.5f, 3},
      {0.6f, 0.99f, 4}, {1.0f, 0.05f, 5}, {2.0f, 1.0f, 6},
      {1.0f, std::nextafter(1.0f, 0.0f), 7},  // the threshold search keeping (almost) everything
  };
  for (int vocab : {50, 517, 4099, 128256}) {
    const int steps = vocab > 10000 ? 60 : 200;
    const std::vector<float> logits = grid_logits(vocab, 16.0f, static_cast<uint32_t>(vocab));
    for (const SamplingParams& p : configs) expect_same_tokens(logits, p, steps);
  }
}

// Logits one float past a 16-byte boundary: the scalar load paths.
TEST(SamplingGpu, MisalignedLogitsGiveTheSameTokens) {
  if (!gpu_test::have_gpu()) GTEST_SKIP() << "no CUDA device";
  const std::vector<float> logits = grid_logits(4097, 12.0f, 9);
  expect_same_tokens(logits, {0.9f, 1.0f, 11}, 100, 1);
  expect_same_tokens(logits, {0.9f, 0.8f, 12}, 100, 1);
  expect_same_tokens(logits, {0.0f, 1.0f, 13}, 3, 1);
}

// Tied logits at the threshold are all kept, −inf and NaN never drawn; both sides agree.
TEST(SamplingGpu, TiesMaskedAndNaNLogits) {
  if (!gpu_test::have_gpu()) GTEST_SKIP() << "no CUDA device";
  std::vector<float> logits(3000, -kInf);
  for (size_t i = 0; i < logits.size(); i += 3) logits[i] = static_cast<float>(i % 7);  // many exact ties
  logits[1] = kNaN;
  logits[2999] = 6.0f;
  logits[1500] = -0.0f;  // ties with the +0 logits
  for (const SamplingParams& p : {SamplingParams{1.0f, 0.3f, 1}, SamplingParams{0.8f, 0.95f, 2},
                                  SamplingParams{1.0f, 1.0f, 3}, SamplingParams{3.0f, 0.7f, 4}}) {
    Rig rig(logits, p);
    Sampler cpu(p);
    for (int k = 0; k < 300; ++k) {
      const int32_t token = rig.sample();
      ASSERT_EQ(token, cpu.next(logits)) << describe(p, 3000) << " step " << k;
      ASSERT_TRUE(std::isfinite(logits[static_cast<size_t>(token)])) << "drew a masked or NaN logit";
    }
  }
}

TEST(SamplingGpu, GreedyTakesTheLowestIndexOfTheMaxAndSkipsNaN) {
  if (!gpu_test::have_gpu()) GTEST_SKIP() << "no CUDA device";
  const SamplingParams greedy{0.0f, 1.0f, 0};
  EXPECT_EQ(Rig({kNaN, 1.0f, 3.0f, 3.0f, kNaN}, greedy).sample(), 2);
  EXPECT_EQ(Rig({kNaN, kNaN, kNaN}, greedy).sample(), 0);
  EXPECT_EQ(Rig({-kInf, -kInf}, SamplingParams{1.0f, 0.5f, 1}).sample(), 0);  // nothing to sample: greedy
  std::vector<float> big = grid_logits(128256, 10.0f, 3);
  big[70001] = 50.0f;
  big[5003] = 50.0f;  // the lower of two equal maxima, far apart (different threads and tiles)
  big[127000] = kNaN;
  EXPECT_EQ(Rig(big, greedy).sample(), 5003);
  EXPECT_EQ(argmax(big), 5003);
  // A temperature so low that every other weight rounds to 0 in fixed point: one of the two maxima.
  const SamplingParams cold{1e-3f, 1.0f, 4};
  const int32_t token = Rig(big, cold).sample();
  EXPECT_TRUE(token == 5003 || token == 70001) << token;
  EXPECT_EQ(token, Sampler(cold).next(big));
}

// The counter is read, used as the draw's step and incremented: first_step 7 draws steps 7, 8, ...
TEST(SamplingGpu, StepCounterIsTheDrawIndexAndIncrements) {
  if (!gpu_test::have_gpu()) GTEST_SKIP() << "no CUDA device";
  const std::vector<float> logits = grid_logits(1000, 8.0f, 5);
  const SamplingParams p{1.0f, 0.9f, 99};
  Rig rig(logits, p, 7);
  Sampler cpu(p);
  for (uint64_t k = 7; k < 57; ++k) ASSERT_EQ(rig.sample(), cpu.next_at(logits, k)) << "step " << k;
  EXPECT_EQ(rig.step(), 57u);
  // Greedy calls advance the counter too.
  Rig greedy(logits, SamplingParams{0.0f, 1.0f, 1}, 3);
  greedy.sample();
  EXPECT_EQ(greedy.step(), 4u);
}

// One launch captured in a CUDA graph and replayed: each replay reads the counter and the parameters
// from device memory, so replays walk the steps and follow parameter updates.
TEST(SamplingGpu, GraphReplayWalksTheSteps) {
  if (!gpu_test::have_gpu()) GTEST_SKIP() << "no CUDA device";
  const std::vector<float> logits = grid_logits(32000, 14.0f, 6);
  SamplingParams p{0.8f, 0.95f, 2024};
  Rig rig(logits, p);
  cudaStream_t stream = nullptr;
  RA_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  RA_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  RA_CUDA_CHECK(rig.launch(stream));
  RA_CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
  RA_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
  EXPECT_EQ(rig.step(), 0u) << "capturing must not run the kernel";
  for (uint64_t k = 0; k < 60; ++k) {
    if (k == 30) {  // new parameters, same graph
      p = SamplingParams{1.2f, 1.0f, 7};
      rig.d_params.upload({p});
    }
    RA_CUDA_CHECK(cudaGraphLaunch(exec, stream));
    RA_CUDA_CHECK(cudaStreamSynchronize(stream));
    ASSERT_EQ(rig.d_out.download()[0], Sampler(p).next_at(logits, k)) << "replay " << k;
  }
  EXPECT_EQ(rig.step(), 60u);
  RA_CUDA_CHECK(cudaGraphExecDestroy(exec));
  RA_CUDA_CHECK(cudaGraphDestroy(graph));
  RA_CUDA_CHECK(cudaStreamDestroy(stream));
}

TEST(SamplingGpu, RejectsBadArgumentsWithoutLaunching) {
  if (!gpu_test::have_gpu()) GTEST_SKIP() << "no CUDA device";
  Rig rig({1.0f, 2.0f}, SamplingParams{});
  EXPECT_EQ(cuda::sample_token(rig.d_logits.get(), 0, rig.d_params.get(), rig.d_step.get(), rig.d_out.get(), nullptr),
            cudaErrorInvalidValue);
  EXPECT_EQ(cuda::sample_token(rig.d_logits.get(), 1 << 23, rig.d_params.get(), rig.d_step.get(), rig.d_out.get(),
                               nullptr),
            cudaErrorInvalidValue);
  EXPECT_EQ(cuda::sample_token(nullptr, 2, rig.d_params.get(), rig.d_step.get(), rig.d_out.get(), nullptr),
            cudaErrorInvalidValue);
  EXPECT_EQ(rig.step(), 0u);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
}

// Parameters the host Sampler rejects still give a defined token on the device: temperature <= 0 is
// greedy, top_p <= 0 keeps only the top logit (and its ties).
TEST(SamplingGpu, OutOfRangeParametersStayDefined) {
  if (!gpu_test::have_gpu()) GTEST_SKIP() << "no CUDA device";
  const std::vector<float> logits = grid_logits(777, 10.0f, 8);
  const int32_t best = argmax(logits);
  Rig negative_t(logits, SamplingParams{-1.0f, 1.0f, 1});
  Rig zero_p(logits, SamplingParams{1.0f, 0.0f, 1});
  for (int k = 0; k < 20; ++k) {
    ASSERT_EQ(negative_t.sample(), best);
    ASSERT_EQ(zero_p.sample(), best);
  }
}

}  // namespace
}  // namespace ra
