#include "cpu_retriever/blas_top_k.h"

#include <cblas.h>
#include <omp.h>
#if defined(__SSE2__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cstddef>
#include <limits>
#include <vector>

#include "common/error.h"
#include "cpu_retriever/ranking.h"

namespace ra::retriever {
namespace {

// 256 queries × 2048 keys of scores: 2 MiB per thread (large query blocks amortise sgemm packing the
// key block), and a key block of 1 MiB at dim 128.
constexpr int64_t kQueryBlock = 256;
constexpr int64_t kKeyBlock = 2048;

constexpr int64_t kLanes = 16;

// Whether any of s[0, 16) is at least bar (NaN is not).
inline bool any_at_least(const float* s, float bar) {
#if defined(__SSE2__)
  const __m128 b = _mm_set1_ps(bar);
  const __m128 m = _mm_or_ps(_mm_or_ps(_mm_cmpge_ps(_mm_loadu_ps(s), b), _mm_cmpge_ps(_mm_loadu_ps(s + 4), b)),
                             _mm_or_ps(_mm_cmpge_ps(_mm_loadu_ps(s + 8), b), _mm_cmpge_ps(_mm_loadu_ps(s + 12), b)));
  return _mm_movemask_ps(m) != 0;
#else
  bool any = false;
  for (int64_t u = 0; u < kLanes; ++u) any = any || s[u] >= bar;
  return any;
#endif
}

struct Hit {
  float score;
  int64_t id;
};

}  // namespace

void blas_top_k_batch(const float* queries, int64_t nq, const float* keys, int64_t n, int64_t dim, int k,
                      int64_t* ids_out, float* scores_out, int threads) {
  blas_top_k_batch(queries, nq, keys, KvDtype::kF32, n, dim, k, ids_out, scores_out, threads);
}

void blas_top_k_batch(const float* queries, int64_t nq, const void* keys, KvDtype dtype, int64_t n, int64_t dim,
                      int k, int64_t* ids_out, float* scores_out, int threads) {
  RA_REQUIRE(nq >= 0 && n >= 0 && dim > 0 && k >= 0, "blas_top_k_batch: bad shape nq={} n={} dim={} k={}", nq, n,
             dim, k);
  if (nq == 0 || k == 0) return;
  const int64_t kk = std::min<int64_t>(k, n);
  openblas_set_num_threads(1);
  const int64_t blocks = (nq + kQueryBlock - 1) / kQueryBlock;
#pragma omp parallel num_threads(threads > 0 ? threads : omp_get_max_threads())
  {
    std::vector<float> scores(static_cast<size_t>(kQueryBlock * kKeyBlock));
    // 16-bit keys: each key block widened to float32 for sgemm (exact; 1/256 of the block's work); int8
    // rows dequantised.
    std::vector<float> widened(dtype == KvDtype::kF32 ? 0 : static_cast<size_t>(kKeyBlock * dim));
    const size_t row_bytes = kv_row_bytes(dtype, dim);
    // Per query of the block: candidates that may still make its top kk, at most 2 kk of them, and the
    // score a new key must beat once the candidates have been cut to kk (the worst kept).
    std::vector<std::vector<Hit>> cands(static_cast<size_t>(kQueryBlock));
    for (auto& c : cands) c.reserve(static_cast<size_t>(2 * kk));
    std::vector<Hit> bar(static_cast<size_t>(kQueryBlock));
    // Keeps the best kk of c, in no particular order, and returns the worst kept.
    auto cut = [kk](std::vector<Hit>& c) {
      std::nth_element(c.begin(), c.begin() + (kk - 1), c.end(), better);
      c.resize(static_cast<size_t>(kk));
      return c[static_cast<size_t>(kk - 1)];
    };
    const int64_t key_blocks = (n + kKeyBlock - 1) / kKeyBlock;
#pragma omp for schedule(dynamic, 1)
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t q0 = b * kQueryBlock, rows = std::min(kQueryBlock, nq - q0);
      for (int64_t r = 0; r < rows; ++r) {
        cands[r].clear();
        bar[r] = {-std::numeric_limits<float>::infinity(), std::numeric_limits<int64_t>::max()};
      }
      // Training rows come in sequence order (prefill queries, then keys), and their best keys are
      // mostly near their own position: starting there raises each bar early, so fewer keys enter.
      const int64_t first = std::min(key_blocks - 1, q0 * n / nq / kKeyBlock);
      for (int64_t t = 0; t < key_blocks; ++t) {
        const int64_t k0 = (first + t) % key_blocks * kKeyBlock;
        const int64_t cols = std::min(kKeyBlock, n - k0);
        const void* block = static_cast<const std::byte*>(keys) + static_cast<size_t>(k0) * row_bytes;
        const float* key_block = static_cast<const float*>(block);
        if (dtype != KvDtype::kF32) {
          widen_rows(dtype, block, cols, dim, widened.data());
          key_block = widened.data();
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(rows), static_cast<int>(cols),
                    static_cast<int>(dim), 1.0f, queries + q0 * dim, static_cast<int>(dim), key_block,
                    static_cast<int>(dim), 0.0f, scores.data(), static_cast<int>(cols));
        for (int64_t r = 0; r < rows; ++r) {
          auto& c = cands[r];
          const float* s = scores.data() + r * cols;
          Hit worst = bar[r];
          auto offer = [&](int64_t j) {
            const Hit h{s[j], k0 + j};
            if (!better(h, worst)) return;
            c.push_back(h);
            if (static_cast<int64_t>(c.size()) == 2 * kk) worst = cut(c);
          };
          // Only a key that ranks before the worst kept can enter, and most do not: test 16 scores at a
          // time against its score, then one by one.
          int64_t j = 0;
          for (; j + kLanes <= cols; j += kLanes) {
            if (!any_at_least(s + j, worst.score)) continue;
            for (int64_t u = 0; u < kLanes; ++u) offer(j + u);
          }
          for (; j < cols; ++j) offer(j);
          bar[r] = worst;
        }
      }
      for (int64_t r = 0; r < rows; ++r) {
        auto& c = cands[r];
        if (static_cast<int64_t>(c.size()) > kk) cut(c);
        std::sort(c.begin(), c.end(), better);
        int64_t* ids = ids_out + (q0 + r) * k;
        float* out = scores_out + (q0 + r) * k;
        for (int64_t j = 0; j < k; ++j) {
          ids[j] = j < kk ? c[static_cast<size_t>(j)].id : -1;
          out[j] = j < kk ? c[static_cast<size_t>(j)].score : -std::numeric_limits<float>::infinity();
        }
      }
    }
  }
}

}  // namespace ra::retriever
