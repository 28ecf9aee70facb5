// ra-bench-merge: how long one tail merge takes as the graph it merges into grows. For each context N
// it builds a GraphIndex on N synthetic keys (low-rank keys, out-of-distribution queries, as in
// graph_index_test), then times `merges` merges of `batch` appended keys, each with its own queries
// (as the retriever appends evicted tokens: a kv head's graph takes the queries of its group's heads).
// A merge that is O(new keys) takes the same time at every N.
//
//   ra-bench-merge [--contexts 8192,32768,131072] [--batch 256] [--merges 5] [--dim 128] [--queries Q]
//                  [--ef-construction E] [--answers 0|1] [--recall-queries T]
//
// --queries Q: queries per appended key (default 1; 0: keys alone, the merge skips the query projection;
// 4: a Llama-3-8B kv head's group). --answers 1: each query comes with its decode answer (GraphIndex::
// append), found by a search of the index (ef 2 Kq, k Kq) just before its key's batch is appended, as
// the decode step found it; the merge then searches no more for it. Those searches are not timed.
// --recall-queries T: after the merges, recall@100 of T fresh queries at ef 200 against brute force over
// every key, so a cheaper merge shows what it costs the graph.
//
// Prints one line per context: build seconds, then per merge the median and min milliseconds, the
// median microseconds per merged key, the work per merged key (keys scored, old lists rewritten), and
// the recall.

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
#include "cpu_retriever/key_index.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  std::vector<int64_t> contexts{8192, 32768, 131072};
  int64_t batch = 256;
  int merges = 5;
  int64_t dim = 128;
  int queries = 1;
  int ef_construction = 0;  // 0: GraphBuildParams' default
  bool answers = false;
  int recall_queries = 0;
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

// Mean recall@100 of t fresh queries at ef 200 against brute force over every key of the arena.
double recall_at_100(const ra::retriever::GraphIndex& index, const ra::retriever::RowArena& arena, Generator& gen,
                     int t) {
  constexpr int k = 100;
  const int64_t n = arena.size(), dim = arena.dim();
  const std::vector<float> all = arena.widened(n);
  const std::vector<float> qs = gen.rows(t, true);
  std::vector<int64_t> ids(k);
  std::vector<float> scores(k);
  double sum = 0;
  for (int i = 0; i < t; ++i) {
    const float* q = qs.data() + i * dim;
    std::vector<std::pair<float, int64_t>> exact(static_cast<size_t>(n));
    for (int64_t j = 0; j < n; ++j) {
      float dot = 0;
      for (int64_t c = 0; c < dim; ++c) dot += q[c] * all[j * dim + c];
      exact[j] = {-dot, j};
    }
    std::partial_sort(exact.begin(), exact.begin() + k, exact.end());
    const int got = index.search(q, ra::retriever::SearchParams{.k = k, .ef = 200}, ids.data(), scores.data(), nullptr);
    std::vector<int64_t> truth(k);
    for (int j = 0; j < k; ++j) truth[j] = exact[j].second;
    std::sort(truth.begin(), truth.end());
    int hit = 0;
    for (int j = 0; j < got; ++j) hit += std::binary_search(truth.begin(), truth.end(), ids[j]) ? 1 : 0;
    sum += static_cast<double>(hit) / k;
  }
  return sum / t;
}

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
      o.queries = std::atoi(argv[i + 1]);
    } else if (!std::strcmp(argv[i], "--ef-construction")) {
      o.ef_construction = std::atoi(argv[i + 1]);
    } else if (!std::strcmp(argv[i], "--answers")) {
      o.answers = std::atoi(argv[i + 1]) != 0;
    } else if (!std::strcmp(argv[i], "--recall-queries")) {
      o.recall_queries = std::atoi(argv[i + 1]);
    } else {
      std::fprintf(stderr,
                   "usage: %s [--contexts N,N,...] [--batch B] [--merges K] [--dim D] [--queries Q] "
                   "[--ef-construction E] [--answers 0|1] [--recall-queries T]\n",
                   argv[0]);
      return 2;
    }
  }
  if (o.queries < 0 || o.queries > 255 || (o.answers && o.queries == 0)) {
    std::fprintf(stderr, "--queries must be 0 to 255, and --answers needs queries\n");
    return 2;
  }
  std::printf("batch %lld keys with %d queries each%s, dim %lld, %d merges per context, OpenMP threads %d (build only)\n",
              static_cast<long long>(o.batch), o.queries, o.answers ? " and their decode answers" : "",
              static_cast<long long>(o.dim), o.merges, omp_get_max_threads());
  std::printf("%10s %8s %12s %12s %14s %14s %14s %10s\n", "context", "build_s", "merge_ms_p50", "merge_ms_min",
              "us_per_key_p50", "scored_per_key", "lists_per_key", "recall");
  for (const int64_t n : o.contexts) {
    Generator gen(o.dim, 1);
    const std::vector<float> keys = gen.rows(n + o.batch * o.merges, false);
    const int64_t n_train = std::min<int64_t>(2000, n);
    const std::vector<float> train = gen.rows(n_train, true);
    const int q_per_key = std::max(1, o.queries);
    const std::vector<float> own_queries = gen.rows(o.batch * o.merges * q_per_key, true);
    ra::retriever::GraphBuildParams p;
    p.key_lists_stride = 0;  // keeps the build affordable at 128K on a small machine; merges do not use it
    p.append_capacity = o.batch * o.merges;
    if (o.ef_construction > 0) p.ef_construction = o.ef_construction;
    // The keys in a bf16 arena shared with the index, as a retriever's KV store holds them (HeadShard).
    auto arena = std::make_shared<ra::retriever::RowArena>(ra::retriever::KvDtype::kBF16, o.dim,
                                                            n + o.batch * o.merges);
    arena->append(keys.data(), n);
    const auto t0 = Clock::now();
    ra::retriever::GraphIndex index(arena, n, train.data(), n_train, p);
    const double build_s = ms_since(t0) / 1000.0;
    std::vector<double> ms;
    const int kq = p.Kq;
    std::vector<int32_t> answers(static_cast<size_t>(o.batch * q_per_key * kq), -1);
    std::vector<int64_t> ids(static_cast<size_t>(kq));
    std::vector<float> scores(static_cast<size_t>(kq));
    for (int r = 0; r < o.merges; ++r) {
      // The batch's decode answers, found before its keys arrive (a token's key leaves the GPU's window
      // after its query was answered).
      for (int64_t i = 0; o.answers && i < o.batch * q_per_key; ++i) {
        const float* q = own_queries.data() + (r * o.batch * q_per_key + i) * o.dim;
        const int got = index.search(q, ra::retriever::SearchParams{.k = kq, .ef = 2 * kq}, ids.data(),
                                     scores.data(), nullptr);
        for (int j = 0; j < kq; ++j) answers[static_cast<size_t>(i * kq + j)] = j < got ? static_cast<int32_t>(ids[j]) : -1;
      }
      for (int64_t i = 0; i < o.batch; ++i) {
        const int64_t row = r * o.batch + i;
        arena->append(keys.data() + (n + row) * o.dim);
        index.adopt_next_row(o.queries > 0 ? own_queries.data() + row * q_per_key * o.dim : nullptr, q_per_key,
                             o.answers ? answers.data() + i * q_per_key * kq : nullptr, o.answers ? kq : 0);
      }
      const auto t = Clock::now();
      index.merge_tail();
      ms.push_back(ms_since(t));
    }
    std::sort(ms.begin(), ms.end());
    const double p50 = ms[ms.size() / 2];
    const auto stats = index.merge_stats();
    const double keys_merged = static_cast<double>(std::max<int64_t>(1, stats.keys));
    const double recall = o.recall_queries > 0 ? recall_at_100(index, *arena, gen, o.recall_queries) : -1.0;
    std::printf("%10lld %8.1f %12.2f %12.2f %14.1f %14.0f %14.2f %10.4f\n", static_cast<long long>(n), build_s, p50,
                ms.front(), 1000.0 * p50 / static_cast<double>(o.batch),
                static_cast<double>(stats.distance_computations) / keys_merged,
                static_cast<double>(stats.lists_rewritten) / keys_merged, recall);
    std::fflush(stdout);
  }
  return 0;
}
