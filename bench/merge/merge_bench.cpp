// ra-bench-merge: how long one tail merge takes as the graph it merges into grows. For each context N
// it builds a GraphIndex on N synthetic keys (low-rank keys, out-of-distribution queries, as in
// graph_index_test), then times `merges` merges of `batch` appended keys, each with its own query
// (as the retriever appends evicted tokens). A merge that is O(new keys) takes the same time at every N.
//
//   ra-bench-merge [--contexts 8192,32768,131072] [--batch 256] [--merges 5] [--dim 128] [--queries 1|0]
//
// --queries 0 appends the keys without their queries (the merge then skips the query projection).
//
// Prints one line per context: build seconds, then per merge the median and min milliseconds, the
// median microseconds per merged key, and the work per merged key (keys scored, old lists rewritten).

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "cpu_retriever/graph_index.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  std::vector<int64_t> contexts{8192, 32768, 131072};
  int64_t batch = 256;
  int merges = 5;
  int64_t dim = 128;
  bool queries = true;
};

std::vector<int64_t> parse_list(const char* s) {
  std::vector<int64_t> out;
  for (const char* p = s; *p != '\0';) {
    char* end = nullptr;
    out.push_back(std::strtoll(p, &end, 10));
    p = *end == ',' ? end + 1 : end;
    if (end == p && *p != '\0') break;
  }
  return out;
}

// Rows of a low-rank Gaussian around mean_scale * m (+ shift): keys at 1, queries mirrored at -1.5.
struct Generator {
  static constexpr int64_t kRank = 16;
  int64_t dim;
  std::mt19937_64 rng;
  std::vector<float> m, w, basis;
  Generator(int64_t d, uint64_t seed) : dim(d), rng(seed), m(d), w(d), basis(d * kRank) {
    std::normal_distribution<float> g(0.f, 1.f);
    for (int64_t j = 0; j < d; ++j) {
      m[j] = g(rng);
      w[j] = g(rng);
    }
    for (auto& b : basis) b = g(rng) / 4.f;
  }
  std::vector<float> rows(int64_t n, bool queries) {
    std::normal_distribution<float> g(0.f, 1.f);
    std::vector<float> out(static_cast<size_t>(n * dim));
    float z[kRank];
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t l = 0; l < kRank; ++l) z[l] = (0.3f + 1.7f * static_cast<float>(l) / (kRank - 1)) * g(rng);
      for (int64_t j = 0; j < dim; ++j) {
        float v = (queries ? -1.5f * m[j] + w[j] : m[j]) + 0.05f * g(rng);
        for (int64_t l = 0; l < kRank; ++l) v += (queries ? 0.6f : 1.f) * basis[j * kRank + l] * z[l];
        out[i * dim + j] = v;
      }
    }
    return out;
  }
};

double ms_since(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--contexts")) {
      o.contexts = parse_list(argv[i + 1]);
    } else if (!std::strcmp(argv[i], "--batch")) {
      o.batch = std::atoll(argv[i + 1]);
    } else if (!std::strcmp(argv[i], "--merges")) {
      o.merges = std::atoi(argv[i + 1]);
    } else if (!std::strcmp(argv[i], "--dim")) {
      o.dim = std::atoll(argv[i + 1]);
    } else if (!std::strcmp(argv[i], "--queries")) {
      o.queries = std::atoi(argv[i + 1]) != 0;
    } else {
      std::fprintf(stderr, "usage: %s [--contexts N,N,...] [--batch B] [--merges K] [--dim D] [--queries 1|0]\n",
                   argv[0]);
      return 2;
    }
  }
  std::printf("batch %lld keys %s queries, dim %lld, %d merges per context, OpenMP threads %d (build only)\n",
              static_cast<long long>(o.batch), o.queries ? "with" : "without", static_cast<long long>(o.dim), o.merges,
              omp_get_max_threads());
  std::printf("%10s %8s %12s %12s %14s %14s %14s\n", "context", "build_s", "merge_ms_p50", "merge_ms_min",
              "us_per_key_p50", "scored_per_key", "lists_per_key");
  for (const int64_t n : o.contexts) {
    Generator gen(o.dim, 1);
    const std::vector<float> keys = gen.rows(n + o.batch * o.merges, false);
    const int64_t n_train = std::min<int64_t>(2000, n);
    const std::vector<float> train = gen.rows(n_train, true);
    const std::vector<float> own_queries = gen.rows(o.batch * o.merges, true);
    ra::retriever::GraphBuildParams p;
    p.key_lists_stride = 0;  // keeps the build affordable at 128K on a small machine; merges do not use it
    p.append_capacity = o.batch * o.merges;
    const auto t0 = Clock::now();
    ra::retriever::GraphIndex index(keys.data(), n, o.dim, train.data(), n_train, p);
    const double build_s = ms_since(t0) / 1000.0;
    std::vector<double> ms;
    for (int r = 0; r < o.merges; ++r) {
      for (int64_t i = 0; i < o.batch; ++i) {
        const int64_t row = r * o.batch + i;
        index.append(keys.data() + (n + row) * o.dim, o.queries ? own_queries.data() + row * o.dim : nullptr);
      }
      const auto t = Clock::now();
      index.merge_tail();
      ms.push_back(ms_since(t));
    }
    std::sort(ms.begin(), ms.end());
    const double p50 = ms[ms.size() / 2];
    const auto stats = index.merge_stats();
    const double keys_merged = static_cast<double>(std::max<int64_t>(1, stats.keys));
    std::printf("%10lld %8.1f %12.2f %12.2f %14.1f %14.0f %14.2f\n", static_cast<long long>(n), build_s, p50,
                ms.front(), 1000.0 * p50 / static_cast<double>(o.batch),
                static_cast<double>(stats.distance_computations) / keys_merged,
                static_cast<double>(stats.lists_rewritten) / keys_merged);
    std::fflush(stdout);
  }
  return 0;
}
