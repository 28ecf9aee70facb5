#include "cpu_retriever/flat_index.h"

#include <omp.h>

#include <algorithm>
#include <limits>
#include <utility>
#include <vector>

#include "common/error.h"
#include "cpu_retriever/ranking.h"
#include "cpu_retriever/dot.h"

namespace ra::retriever {

namespace {

struct Hit {
  float score;
  int64_t id;
};

// keys: n rows of E (row_bytes<E>(dim) bytes each, int8 rows with their scales).
template <typename E>
int exact_top_k_rows(const float* q, const void* keys, int64_t n, int64_t dim, int k, int64_t* ids,
                     float* scores) {
  RA_REQUIRE(k >= 0, "exact_top_k: k must be >= 0, got {}", k);
  RA_REQUIRE(n >= 0, "exact_top_k: n must be >= 0, got {}", n);
  RA_REQUIRE(dim > 0, "exact_top_k: dim must be > 0, got {}", dim);
  const int64_t kk = std::min<int64_t>(k, n);
  if (kk == 0) return 0;

  // Bounded heap whose front is the worst hit kept (std heap with `better` as less-than). One per
  // thread, reused: a flat search runs per query head on every decode step.
  thread_local std::vector<Hit> heap;
  heap.clear();
  heap.reserve(static_cast<size_t>(kk));
  auto offer = [&](const Hit& h) {
    if (static_cast<int64_t>(heap.size()) < kk) {
      heap.push_back(h);
      std::push_heap(heap.begin(), heap.end(), better);
    } else if (better(h, heap.front())) {
      std::pop_heap(heap.begin(), heap.end(), better);
      heap.back() = h;
      std::push_heap(heap.begin(), heap.end(), better);
    }
  };
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {  // four keys per call: independent add chains (dot.h)
    const typename E::T* rows[4] = {row_at<E>(keys, i, dim), row_at<E>(keys, i + 1, dim), row_at<E>(keys, i + 2, dim),
                                    row_at<E>(keys, i + 3, dim)};
    float s[4];
    dot_row_x4<E>(q, rows, dim, s);
    for (int r = 0; r < 4; ++r) offer({s[r], i + r});
  }
  for (; i < n; ++i) offer({dot_row<E>(q, row_at<E>(keys, i, dim), dim), i});
  std::sort_heap(heap.begin(), heap.end(), better);  // ascending by `better`: best first
  for (int64_t r = 0; r < kk; ++r) {
    ids[r] = heap[static_cast<size_t>(r)].id;
    scores[r] = heap[static_cast<size_t>(r)].score;
  }
  return static_cast<int>(kk);
}

}  // namespace

int exact_top_k(const float* q, const void* keys, KvDtype dtype, int64_t n, int64_t dim, int k, int64_t* ids,
                float* scores) {
  return with_row_elem(dtype, [&](auto e) { return exact_top_k_rows<decltype(e)>(q, keys, n, dim, k, ids, scores); });
}

int exact_top_k(const float* q, const float* keys, int64_t n, int64_t dim, int k, int64_t* ids,
                float* scores) {
  return exact_top_k(q, keys, KvDtype::kF32, n, dim, k, ids, scores);
}

void exact_top_k_batch(const float* queries, int64_t nq, const float* keys, int64_t n, int64_t dim,
                       int k, int64_t* ids_out, float* scores_out, int threads) {
  RA_REQUIRE(nq >= 0, "exact_top_k_batch: nq must be >= 0, got {}", nq);
  RA_REQUIRE(k >= 0 && n >= 0 && dim > 0, "exact_top_k_batch: bad shape k={} n={} dim={}", k, n, dim);
  const int nthreads = threads > 0 ? threads : omp_get_max_threads();
#pragma omp parallel for schedule(dynamic, 4) num_threads(nthreads)
  for (int64_t i = 0; i < nq; ++i) {
    int64_t* ids = ids_out + i * k;
    float* scores = scores_out + i * k;
    const int got = exact_top_k(queries + i * dim, keys, n, dim, k, ids, scores);
    for (int r = got; r < k; ++r) {
      ids[r] = -1;
      scores[r] = -std::numeric_limits<float>::infinity();
    }
  }
}

FlatIndex::FlatIndex(const float* keys, int64_t n, int64_t dim) : FlatIndex(keys, KvDtype::kF32, n, dim) {}

FlatIndex::FlatIndex(const void* keys, KvDtype dtype, int64_t n, int64_t dim)
    : keys_(keys), dtype_(dtype), n_(n), dim_(dim) {
  RA_REQUIRE(n >= 0, "FlatIndex: n must be >= 0, got {}", n);
  RA_REQUIRE(dim > 0, "FlatIndex: dim must be > 0, got {}", dim);
  RA_REQUIRE(keys != nullptr || n == 0, "FlatIndex: null key matrix with n = {}", n);
}

int FlatIndex::search(const float* q, const SearchParams& params, int64_t* ids, float* scores,
                      SearchStats* stats) const {
  const int got = exact_top_k(q, keys_, dtype_, n_, dim_, params.k, ids, scores);
  if (stats != nullptr) stats->distance_computations += n_;
  return got;
}

}  // namespace ra::retriever
