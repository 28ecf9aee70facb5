// The GPU's training lists (gpu_worker/backend/cuda/train_lists.h) against the CPU: row_top_k gives
// exactly the ids a stable sort by (score desc, column asc) gives, ties and short rows included, and
// gather_train_queries copies exactly the chunk's training rows.

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "gpu_worker/backend/cuda/train_lists.h"
#include "tests/gpu/gpu_test_support.h"

namespace ra {
namespace {

using gpu_test::DeviceArray;

// Row r's top k columns by (score desc, column asc), -1 past n.
std::vector<int32_t> reference_top_k(const std::vector<float>& scores, int rows, int n, int k) {
  std::vector<int32_t> out(static_cast<size_t>(rows) * k, -1);
  std::vector<int32_t> cols(static_cast<size_t>(n));
  for (int r = 0; r < rows; ++r) {
    const float* row = scores.data() + static_cast<size_t>(r) * n;
    std::iota(cols.begin(), cols.end(), 0);
    std::stable_sort(cols.begin(), cols.end(), [&](int32_t a, int32_t b) { return row[a] > row[b]; });
    std::copy_n(cols.begin(), std::min(k, n), out.begin() + static_cast<ptrdiff_t>(r) * k);
  }
  return out;
}

void check_top_k(int rows, int n, int k, int distinct_values, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0.f, 3.f);
  std::vector<float> scores(static_cast<size_t>(rows) * n);
  if (distinct_values > 0) {  // few values: most of the top k are ties, broken by column
    std::uniform_int_distribution<int> v(0, distinct_values - 1);
    for (auto& s : scores) s = static_cast<float>(v(rng)) - 0.5f * distinct_values;
  } else {
    for (auto& s : scores) s = g(rng);
  }
  DeviceArray<float> d_scores(scores);
  DeviceArray<int32_t> d_out(static_cast<size_t>(rows) * k);
  RA_CUDA_CHECK(cuda::row_top_k(d_scores.get(), n, rows, n, k, d_out.get(), k, nullptr));
  RA_CUDA_CHECK(cudaDeviceSynchronize());
  const std::vector<int32_t> got = d_out.download();
  const std::vector<int32_t> want = reference_top_k(scores, rows, n, k);
  for (int r = 0; r < rows; ++r) {
    for (int j = 0; j < k; ++j) {
      ASSERT_EQ(got[static_cast<size_t>(r) * k + j], want[static_cast<size_t>(r) * k + j])
          << "rows " << rows << ", n " << n << ", k " << k << ", distinct " << distinct_values << ": row " << r
          << ", rank " << j;
    }
  }
}

TEST(TrainListsGpu, RowTopKEqualsAStableSort) {
  if (!gpu_test::have_gpu()) GTEST_SKIP() << "no CUDA device";
  check_top_k(64, 5000, 100, 0, 1);      // distinct scores
  check_top_k(16, 130000, 100, 0, 2);    // a 128K-key row
  check_top_k(32, 4096, 100, 7, 3);      // seven values: ties everywhere, broken by column
  check_top_k(8, 3000, 256, 2, 4);       // the widest list, two values
  check_top_k(8, 50, 100, 0, 5);         // fewer keys than k: -1 padding
  check_top_k(4, 1, 1, 0, 6);
  // k = 1 (each key's best training query) takes its own one-pass kernel: the same picks.
  check_top_k(1000, 8192, 1, 0, 7);    // the 128K runs' key-query rows: 4 heads x 2,048 training queries
  check_top_k(64, 4096, 1, 3, 8);      // three values: the best is tied, the lowest column wins
  check_top_k(5, 130000, 1, 0, 9);
  check_top_k(9, 33, 1, 0, 10);        // a row shorter than two warp strides, rows not a multiple of 8
}

TEST(TrainListsGpu, RowTopKHandlesNegativeZeroAndInfinities) {
  if (!gpu_test::have_gpu()) GTEST_SKIP() << "no CUDA device";
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<float> scores = {0.f, -inf, 3.f, inf, -2.f, 3.f, 1e-30f, -1e-30f};
  DeviceArray<float> d_scores(scores);
  DeviceArray<int32_t> d_out(5);
  RA_CUDA_CHECK(cuda::row_top_k(d_scores.get(), 8, 1, 8, 5, d_out.get(), 5, nullptr));
  RA_CUDA_CHECK(cudaDeviceSynchronize());
  EXPECT_EQ(d_out.download(), (std::vector<int32_t>{3, 2, 5, 6, 0}));
  DeviceArray<int32_t> d_best(1);  // k = 1: +inf wins, through the one-pass kernel
  RA_CUDA_CHECK(cuda::row_top_k(d_scores.get(), 8, 1, 8, 1, d_best.get(), 1, nullptr));
  RA_CUDA_CHECK(cudaDeviceSynchronize());
  EXPECT_EQ(d_best.download(), (std::vector<int32_t>{3}));
}

TEST(TrainListsGpu, GatherTrainQueriesCopiesTheChunksTrainingRows) {
  if (!gpu_test::have_gpu()) GTEST_SKIP() << "no CUDA device";
  const int heads = 3, hd = 8, chunk_rows = 10, n_train = 6;
  const int64_t chunk_first = 20;
  const std::vector<int64_t> positions = {3, 21, 22, 27, 29, 40};  // rows 1, 2, 7, 9 of the chunk: j in [1, 5)
  std::vector<float> q(static_cast<size_t>(chunk_rows) * heads * hd);
  std::iota(q.begin(), q.end(), 0.f);
  DeviceArray<float> d_q(q);
  DeviceArray<int64_t> d_pos(positions);
  DeviceArray<float> d_train(static_cast<size_t>(heads) * n_train * hd);
  RA_CUDA_CHECK(cudaMemset(d_train.get(), 0, d_train.size() * sizeof(float)));
  RA_CUDA_CHECK(cuda::gather_train_queries<float>(d_q.get(), chunk_first, heads, hd, d_pos.get(), 1, 4, n_train,
                                                  d_train.get(), nullptr));
  RA_CUDA_CHECK(cudaDeviceSynchronize());
  const std::vector<float> got = d_train.download();
  for (int h = 0; h < heads; ++h) {
    for (int j = 0; j < n_train; ++j) {
      for (int d = 0; d < hd; ++d) {
        const bool in_chunk = j >= 1 && j < 5;
        const float want = in_chunk ? q[((positions[j] - chunk_first) * heads + h) * hd + d] : 0.f;
        ASSERT_EQ(got[(static_cast<size_t>(h) * n_train + j) * hd + d], want) << "head " << h << ", row " << j;
      }
    }
  }
}

}  // namespace
}  // namespace ra
