#include "cpu_retriever/blas_top_k.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <limits>
#include <vector>

#include "common/error.h"

namespace ra::retriever {
namespace {

// 64 queries × 2048 keys of scores: 512 KiB per thread, and a key block of 1 MiB at dim 128.
constexpr int64_t kQueryBlock = 64;
constexpr int64_t kKeyBlock = 2048;

struct Hit {
  float score;
  int64_t id;
};

// a ranks before b: higher score, then lower id. As a heap's less-than, the front is the worst kept.
bool better(const Hit& a, const Hit& b) { return a.score > b.score || (a.score == b.score && a.id < b.id); }

}  // namespace

void blas_top_k_batch(const float* queries, int64_t nq, const float* keys, int64_t n, int64_t dim, int k,
                      int64_t* ids_out, float* scores_out, int threads) {
  RA_REQUIRE(nq >= 0 && n >= 0 && dim > 0 && k >= 0, "blas_top_k_batch: bad shape nq={} n={} dim={} k={}", nq, n,
             dim, k);
  if (nq == 0 || k == 0) return;
  const int64_t kk = std::min<int64_t>(k, n);
  openblas_set_num_threads(1);
  const int64_t blocks = (nq + kQueryBlock - 1) / kQueryBlock;
#pragma omp parallel num_threads(threads > 0 ? threads : omp_get_max_threads())
  {
    std::vector<float> scores(static_cast<size_t>(kQueryBlock * kKeyBlock));
    std::vector<std::vector<Hit>> heaps(static_cast<size_t>(kQueryBlock));
    for (auto& h : heaps) h.reserve(static_cast<size_t>(kk));
#pragma omp for schedule(dynamic, 1)
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t q0 = b * kQueryBlock, rows = std::min(kQueryBlock, nq - q0);
      for (int64_t r = 0; r < rows; ++r) heaps[r].clear();
      for (int64_t k0 = 0; k0 < n; k0 += kKeyBlock) {
        const int64_t cols = std::min(kKeyBlock, n - k0);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(rows), static_cast<int>(cols),
                    static_cast<int>(dim), 1.0f, queries + q0 * dim, static_cast<int>(dim), keys + k0 * dim,
                    static_cast<int>(dim), 0.0f, scores.data(), static_cast<int>(cols));
        for (int64_t r = 0; r < rows; ++r) {
          auto& heap = heaps[r];
          const float* s = scores.data() + r * cols;
          for (int64_t c = 0; c < cols; ++c) {
            const Hit h{s[c], k0 + c};
            if (static_cast<int64_t>(heap.size()) < kk) {
              heap.push_back(h);
              std::push_heap(heap.begin(), heap.end(), better);
            } else if (better(h, heap.front())) {
              std::pop_heap(heap.begin(), heap.end(), better);
              heap.back() = h;
              std::push_heap(heap.begin(), heap.end(), better);
            }
          }
        }
      }
      for (int64_t r = 0; r < rows; ++r) {
        auto& heap = heaps[r];
        std::sort_heap(heap.begin(), heap.end(), better);
        int64_t* ids = ids_out + (q0 + r) * k;
        float* out = scores_out + (q0 + r) * k;
        for (int64_t j = 0; j < k; ++j) {
          ids[j] = j < kk ? heap[static_cast<size_t>(j)].id : -1;
          out[j] = j < kk ? heap[static_cast<size_t>(j)].score : -std::numeric_limits<float>::infinity();
        }
      }
    }
  }
}

}  // namespace ra::retriever
