#include "bench/retrieval/retrieval_eval.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <memory>

#include <fmt/format.h>

#include "common/error.h"
#include "cpu_retriever/answer_history.h"
#include "cpu_retriever/flat_index.h"
#include "cpu_retriever/graph_index.h"
#include "cpu_retriever/kv_store.h"
#ifdef RA_HAVE_FAISS
#include "cpu_retriever/faiss_indexes.h"
#endif

namespace ra::retriever {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Knob values for a sweep of beam sizes, as multiples of k. HNSW's beam holds its results, so its sweep
// starts at ef = k; the graph returns the best k of every key it scored, so its beam can be narrower.
// Beam sizes from from * k up: to 10 k, then on while the beam stays within a sixteenth of the keys (at
// 64K keys, recall still climbs past ef = 10 k).
std::vector<int> beam_sweep(int k, int64_t n_keys, double from = 1.0) {
  std::vector<int> out;
  for (double f : {0.16, 0.2, 0.25, 0.32, 0.4, 0.5, 0.64, 0.8, 1.0, 1.25, 1.6, 2.0, 2.5, 3.2, 4.0, 5.0, 6.4, 8.0, 10.0,
                   12.8, 16.0, 20.0, 25.6, 32.0, 40.0, 51.2, 64.0}) {
    const int ef = std::max(1, static_cast<int>(k * f));
    if (f > 10.0 && ef > n_keys / 16) break;
    if (f >= from && (out.empty() || out.back() != ef)) out.push_back(ef);  // small k: no repeated rows
  }
  return out;
}

std::vector<int> nprobe_sweep(int nlist) {
  std::vector<int> out;
  for (int p = 1; p < nlist; p *= 2) out.push_back(p);
  out.push_back(nlist);
  return out;
}

// The test queries and exact answers of one query head.
struct HeadTruth {
  int64_t head = 0;
  const float* test_q = nullptr;   // [n_test][dim]: the layer's rows, or test_rows when subsampled
  std::vector<float> test_rows;    // [n_test][dim] evenly spaced test queries (when n_test < T - N)
  int64_t n_test = 0;
  std::vector<int64_t> truth;      // [n_test][k] exact top-min(k, N) ids ascending, then -1 padding
  std::vector<float> full_o;       // [n_test][dim] attention over all N keys (from the KV store)
};

struct Sweep {
  std::string knob_name;  // "nprobe", "ef" or "" (no knob)
  std::vector<int> values;
};

// Test queries of query head h (n_test of the positions [N, T): all of them, or evenly spaced), their
// exact top-k over the N keys and their attention over all N keys.
HeadTruth make_truth(const LayerQkv& layer, int64_t h, int64_t N, int64_t n_test, const float* keys,
                     const KvStore& store, int k, int threads) {
  const int64_t T = layer.tokens, D = layer.head_dim;
  HeadTruth t;
  t.head = h;
  t.test_q = layer.q + (h * T + N) * D;
  t.n_test = n_test;
  if (n_test < T - N) {  // evenly spaced over [N, T): late positions differ from early ones
    t.test_rows.resize(static_cast<size_t>(n_test * D));
    for (int64_t i = 0; i < n_test; ++i) {
      const int64_t pos = N + i * (T - N) / n_test;
      std::copy_n(layer.q + (h * T + pos) * D, D, t.test_rows.begin() + i * D);
    }
    t.test_q = t.test_rows.data();
  }
  t.truth.resize(static_cast<size_t>(n_test * k));
  std::vector<float> scores(t.truth.size());
  exact_top_k_batch(t.test_q, n_test, keys, N, D, k, t.truth.data(), scores.data(), threads);
  // Rows hold min(k, N) valid ids then -1 padding; sort the valid ones for lookups.
  const int64_t valid = std::min<int64_t>(k, N);
  for (int64_t i = 0; i < n_test; ++i) std::sort(t.truth.begin() + i * k, t.truth.begin() + i * k + valid);
  t.full_o.resize(static_cast<size_t>(n_test * D));
#pragma omp parallel num_threads(threads)
  {
    std::vector<float> scratch(static_cast<size_t>(N));
#pragma omp for schedule(static)
    for (int64_t i = 0; i < n_test; ++i) store.attend_all(t.test_q + i * D, layer.scale, scratch, t.full_o.data() + i * D);
  }
  return t;
}

// Per-thread buffers of one evaluation.
struct QueryBuffers {
  QueryBuffers(int k, int64_t dim)
      : ids(static_cast<size_t>(k)), scores(static_cast<size_t>(k)), scratch(static_cast<size_t>(k)),
        o(static_cast<size_t>(dim)) {}
  std::vector<int64_t> ids;
  std::vector<float> scores, scratch, o;
};

// Sums of one evaluation (a head at one knob value).
struct QuerySums {
  double recall = 0, scanned = 0, us = 0, err = 0;
  QuerySums& operator+=(const QuerySums& o) {
    recall += o.recall;
    scanned += o.scanned;
    us += o.us;
    err += o.err;
    return *this;
  }
};

// Adds the recall and attention error of an answer (ids [found]) to test query i of `head` to `sums`.
void score_answer(const int64_t* ids, int found, int k, const HeadTruth& head, int64_t i, const KvStore& store,
                  const LayerQkv& layer, int64_t n_keys, QueryBuffers& b, QuerySums& sums) {
  const int64_t dim = layer.head_dim;
  const int64_t want = std::min<int64_t>(k, n_keys);
  const float* q = head.test_q + i * dim;
  const int64_t* truth = head.truth.data() + i * k;
  int64_t hits = 0;
  for (int j = 0; j < found; ++j) hits += std::binary_search(truth, truth + want, ids[j]) ? 1 : 0;
  sums.recall += static_cast<double>(hits) / static_cast<double>(want);

  store.attend(q, std::span<const int64_t>(ids, static_cast<size_t>(found)), layer.scale, b.scratch, b.o.data());
  const float* ref = head.full_o.data() + i * dim;
  double num = 0, den = 0;
  for (int64_t d = 0; d < dim; ++d) {
    num += double(b.o[d] - ref[d]) * double(b.o[d] - ref[d]);
    den += double(ref[d]) * double(ref[d]);
  }
  sums.err += den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

// Searches test query i of `head` and adds its recall, keys scanned, latency and attention error to
// `sums`; leaves the answer in b.ids[0, returned).
int measure_query(const KeyIndex& index, const SearchParams& params, const HeadTruth& head, int64_t i,
                  const KvStore& store, const LayerQkv& layer, int64_t n_keys, QueryBuffers& b, QuerySums& sums) {
  const float* q = head.test_q + i * layer.head_dim;
  SearchStats stats;
  const auto start = Clock::now();
  const int found = index.search(q, params, b.ids.data(), b.scores.data(), &stats);
  sums.us += seconds_since(start) * 1e6;
  sums.scanned += static_cast<double>(stats.distance_computations) / static_cast<double>(n_keys);
  score_answer(b.ids.data(), found, params.k, head, i, store, layer, n_keys, b, sums);
  return found;
}

void add_sums(const QuerySums& sums, const HeadTruth& head, const LayerQkv& layer, RowAccumulator& row) {
  row.queries += head.n_test;
  row.recall_sum += sums.recall;
  row.scanned_sum += sums.scanned;
  row.us_sum += sums.us;
  row.attn_err_sum += sums.err;
  auto& per_layer = row.per_layer[layer.layer];
  per_layer.queries += head.n_test;
  per_layer.recall_sum += sums.recall;
  per_layer.scanned_sum += sums.scanned;
  auto& per_head = row.head_recall[{layer.layer, head.head}];
  per_head.first += sums.recall;
  per_head.second += head.n_test;
}

// Searches every test query of `head` with `index` at one knob value and adds into `row`.
void evaluate(const KeyIndex& index, const SearchParams& params, const HeadTruth& head, const KvStore& store,
              const LayerQkv& layer, int64_t n_keys, int threads, RowAccumulator& row) {
  QuerySums total;
#pragma omp parallel num_threads(threads)
  {
    QueryBuffers b(params.k, layer.head_dim);
    QuerySums mine;
#pragma omp for schedule(dynamic, 8) nowait
    for (int64_t i = 0; i < head.n_test; ++i) measure_query(index, params, head, i, store, layer, n_keys, b, mine);
#pragma omp critical
    total += mine;
  }
  add_sums(total, head, layer, row);
}

// As evaluate, for a kv head's graph searched by its whole group at once (GraphIndex::search_group):
// test position i of every head in one traversal. Per head: its recall and error; latency and keys
// scanned are the traversal's shared among the heads (rows fetched / heads: each row fetched once is
// scored for all of them), so the rows compare by memory traffic with one search per head.
void evaluate_group(const GraphIndex& graph, const SearchParams& params, const std::vector<const HeadTruth*>& heads,
                    const KvStore& store, const LayerQkv& layer, int64_t n_keys, int threads, RowAccumulator& row) {
  const int nh = static_cast<int>(heads.size());
  const int64_t n_test = heads.front()->n_test, D = layer.head_dim;
  const int k = params.k;
  std::vector<QuerySums> totals(static_cast<size_t>(nh));
#pragma omp parallel num_threads(threads)
  {
    QueryBuffers b(k, D);
    std::vector<float> qs(static_cast<size_t>(nh * D)), scores(static_cast<size_t>(nh * k));
    std::vector<int64_t> ids(static_cast<size_t>(nh * k));
    std::vector<int> found(static_cast<size_t>(nh));
    std::vector<QuerySums> mine(static_cast<size_t>(nh));
#pragma omp for schedule(dynamic, 8) nowait
    for (int64_t i = 0; i < n_test; ++i) {
      for (int h = 0; h < nh; ++h) std::copy_n(heads[h]->test_q + i * D, D, qs.begin() + h * D);
      SearchStats stats;
      const auto start = Clock::now();
      graph.search_group(qs.data(), nh, params, ids.data(), scores.data(), found.data(), &stats);
      const double us = seconds_since(start) * 1e6 / nh;
      const double rows_fetched = static_cast<double>(stats.distance_computations) / nh;  // each scored nh times
      for (int h = 0; h < nh; ++h) {
        mine[h].us += us;
        mine[h].scanned += rows_fetched / nh / static_cast<double>(n_keys);
        score_answer(ids.data() + h * k, found[h], k, *heads[h], i, store, layer, n_keys, b, mine[h]);
      }
    }
#pragma omp critical
    for (int h = 0; h < nh; ++h) totals[h] += mine[h];
  }
  for (int h = 0; h < nh; ++h) add_sums(totals[h], *heads[h], layer, row);
}

// As evaluate, over consecutive test positions searched in decode order: each query is seeded with
// the answers of the previous `history` positions (AnswerHistory), as a retriever is at every decode
// step. The positions are split into one contiguous run per thread; each run starts with no seeds.
void evaluate_warm(const KeyIndex& index, const SearchParams& params, int history, const HeadTruth& head,
                   const KvStore& store, const LayerQkv& layer, int64_t n_keys, int threads, RowAccumulator& row) {
  QuerySums total;
  const int64_t runs = std::max<int64_t>(1, std::min<int64_t>(threads, head.n_test));
#pragma omp parallel for num_threads(threads) schedule(static, 1)
  for (int64_t r = 0; r < runs; ++r) {
    QueryBuffers b(params.k, layer.head_dim);
    AnswerHistory answers(history);
    QuerySums mine;
    for (int64_t i = r * head.n_test / runs; i < (r + 1) * head.n_test / runs; ++i) {
      SearchParams p = params;
      answers.seed(p);
      const int found = measure_query(index, p, head, i, store, layer, n_keys, b, mine);
      answers.record(std::span<const int64_t>(b.ids.data(), static_cast<size_t>(found)), params.k);
    }
#pragma omp critical
    total += mine;
  }
  add_sums(total, head, layer, row);
}

RowAccumulator& row_for(std::map<std::string, RowAccumulator>& rows, std::vector<std::string>& order,
                        const std::string& index, const std::string& knob) {
  const std::string key = index + "|" + knob;
  auto [it, inserted] = rows.try_emplace(key);
  if (inserted) {
    it->second.index = index;
    it->second.knob = knob;
    order.push_back(key);
  }
  return it->second;
}

bool wanted(const RetrievalBenchConfig& c, const std::string& name) {
  return std::find(c.indexes.begin(), c.indexes.end(), name) != c.indexes.end();
}

}  // namespace

void run_retrieval_layer(const LayerQkv& layer, const RetrievalBenchConfig& config,
                         std::map<std::string, RowAccumulator>& rows, std::vector<std::string>& order) {
  const int64_t N = config.prefill, T = layer.tokens, D = layer.head_dim;
  RA_REQUIRE(N > 0 && N < T, "--prefill {} must be in [1, {}) (the dump has {} tokens)", N, T, T);
  RA_REQUIRE(layer.n_kv_heads > 0 && layer.n_heads % layer.n_kv_heads == 0,
             "layer {}: n_heads {} is not a multiple of n_kv_heads {}", layer.layer, layer.n_heads, layer.n_kv_heads);
  const int threads = config.threads > 0 ? config.threads : omp_get_max_threads();
  const int64_t group = layer.n_heads / layer.n_kv_heads;
  const int64_t n_test = config.max_test_queries > 0 ? std::min(config.max_test_queries, T - N) : T - N;
  const int k = config.k;
#ifndef RA_HAVE_FAISS
  for (const char* name : {"ivf", "hnsw"}) {
    RA_REQUIRE(!wanted(config, name), "index '{}' needs FAISS, which this build lacks", name);
  }
#endif

  for (int64_t g = 0; g < layer.n_kv_heads; ++g) {
    std::vector<int64_t> heads;
    for (int64_t h = g * group; h < (g + 1) * group; ++h) {
      if (config.heads.empty() || std::find(config.heads.begin(), config.heads.end(), h) != config.heads.end()) {
        heads.push_back(h);
      }
    }
    if (heads.empty()) continue;

    const float* keys = layer.k + g * T * D;    // [N][D] prefix of kv head g
    const float* values = layer.v + g * T * D;
    KvStore store(D, KvDtype::kBF16);
    store.append(keys, values, N);

    // The keys the indexes see (RetrievalBenchConfig::key_dtype): the float32 dump, or its rounding in
    // an arena the graphs and flat search score in place (index_keys: the rounding widened, for FAISS).
    std::shared_ptr<RowArena> rounded;
    std::vector<float> widened;
    const float* index_keys = keys;
    if (config.key_dtype != KvDtype::kF32) {
      rounded = std::make_shared<RowArena>(config.key_dtype, D, N);
      rounded->append(keys, N);
      widened = rounded->widened(N);
      index_keys = widened.data();
    }
    // A graph over the first n keys; the rest join with take (own arena: append; shared: adopt).
    auto make_graph = [&](int64_t n, const float* train, int64_t nq, const GraphBuildParams& params) {
      return rounded ? std::make_unique<GraphIndex>(rounded, n, train, nq, params)
                     : std::make_unique<GraphIndex>(keys, n, D, train, nq, params);
    };

    // Exact answers and full attention over all N keys, per query head.
    std::vector<HeadTruth> truths;
    for (int64_t h : heads) {
      truths.push_back(make_truth(layer, h, N, n_test, keys, store, k, threads));
    }

    // Runs one index instance over the given heads for every knob value; with history > 0 in decode
    // order, seeded with the previous `history` answers (evaluate_warm).
    auto sweep = [&](const std::string& name, const KeyIndex& index, double build_s, const Sweep& s,
                     const std::vector<const HeadTruth*>& over, int history = 0, bool exact_navigation = false) {
      for (int value : s.values.empty() ? std::vector<int>{0} : s.values) {
        SearchParams p;
        p.k = k;
        p.exact_navigation = exact_navigation;
        p.expand = config.graph_expand;
        if (s.knob_name == "ef") p.ef = value;
        if (s.knob_name == "nprobe") p.nprobe = value;
        const std::string knob = s.knob_name.empty() ? "-" : fmt::format("{}={}", s.knob_name, value);
        RowAccumulator& row = row_for(rows, order, name, knob);
        for (const HeadTruth* t : over) {
          if (history > 0) {
            evaluate_warm(index, p, history, *t, store, layer, N, threads, row);
          } else {
            evaluate(index, p, *t, store, layer, N, threads, row);
          }
        }
        row.build_s_sum += build_s;
        row.index_bytes_sum += static_cast<double>(index.memory_bytes());
        row.instances += 1;
      }
    };
    // Decode-order rows need every position of [N, T), in order.
    std::vector<HeadTruth> warm_truths;
    if (config.graph_warm > 0) {
      for (int64_t h : heads) warm_truths.push_back(make_truth(layer, h, N, T - N, keys, store, k, threads));
    }
    std::vector<const HeadTruth*> all_heads;
    for (const auto& t : truths) all_heads.push_back(&t);

    if (wanted(config, "flat")) {
      const FlatIndex flat = rounded ? FlatIndex(rounded->data(), config.key_dtype, N, D) : FlatIndex(keys, N, D);
      sweep("flat", flat, 0.0, {}, all_heads);
    }
#ifdef RA_HAVE_FAISS
    if (wanted(config, "ivf")) {
      const int nlist = static_cast<int>(std::clamp<int64_t>(std::llround(4.0 * std::sqrt(double(N))), 1, N));
      const auto start = Clock::now();
      const auto ivf = make_ivf_flat_index(index_keys, N, D, nlist, config.seed);
      sweep("ivf", *ivf, seconds_since(start), {"nprobe", nprobe_sweep(nlist)}, all_heads);
    }
    if (wanted(config, "hnsw")) {
      const auto start = Clock::now();
      const auto hnsw = make_hnsw_flat_index(index_keys, N, D, config.hnsw_M, config.hnsw_ef_construction);
      sweep("hnsw", *hnsw, seconds_since(start), {"ef", beam_sweep(k, N)}, all_heads);
    }
#endif
    RA_REQUIRE(config.graph_append >= 0 && config.graph_append < N,
               "--graph-append {} must be in [0, N = {})", config.graph_append, N);
    GraphBuildParams gp;
    gp.M = config.graph_M;
    gp.threads = threads;
    gp.seed = config.seed;
    gp.max_train_queries = static_cast<int>(config.train_queries);
    gp.occlusion = config.graph_l2_occlusion ? Occlusion::kL2 : Occlusion::kInnerProduct;
    gp.fill_pruned = config.graph_fill;
    gp.degree_cap = config.graph_degree_cap;
    gp.ef_construction = config.graph_ef_construction;
    gp.connect_max_in_degree = config.graph_connect_max_in_degree;
    gp.connect_query_lists = config.graph_connect_query_lists;
    gp.entry_samples = config.graph_entry_samples;
    gp.pivots = config.graph_pivots;
    gp.pivot_span = config.graph_pivot_span;
    gp.Kq = config.graph_Kq;
    gp.final_prune = config.graph_final_prune;
    gp.repair_ef = config.graph_repair_ef;
    gp.repair_stride = config.graph_repair_stride;
    gp.key_lists_stride = config.graph_key_lists_stride;
    if (wanted(config, "graph")) {  // one index per query head, trained on that head's queries (the paper)
      for (const auto& t : truths) {
        const auto start = Clock::now();
        const auto graph_ptr = make_graph(N, layer.q + t.head * T * D, N, gp);
        const GraphIndex& graph = *graph_ptr;
        const double build_s = seconds_since(start);
        sweep("graph", graph, build_s, {"ef", beam_sweep(k, N, 0.16)}, {&t});
        if (config.graph_warm > 0) {
          const HeadTruth& every = warm_truths.at(static_cast<size_t>(&t - truths.data()));
          sweep("graph_warm", graph, build_s, {"ef", beam_sweep(k, N, 0.16)}, {&every}, config.graph_warm);
        }
        if (config.graph_append > 0) {  // the last A keys arrive after the build, as decode tokens do
          const int64_t A = config.graph_append, base_n = N - A;
          const auto base_start = Clock::now();
          const auto grown_ptr = make_graph(base_n, layer.q + t.head * T * D, base_n, gp);
          GraphIndex& grown = *grown_ptr;
          const double base_s = seconds_since(base_start);
          for (int64_t i = base_n; i < N; ++i) {
            const float* q = layer.q + (t.head * T + i) * D;
            rounded ? grown.adopt_next_row(q) : grown.append(keys + i * D, q);
          }
          sweep("graph_tail", grown, base_s, {"ef", beam_sweep(k, N, 0.16)}, {&t});
          const auto merge_start = Clock::now();
          grown.merge_tail();
          const double merge_s = seconds_since(merge_start);
          std::fprintf(stderr, "layer %lld head %lld: merged %lld appended keys into a %lld-key graph in %.2f s\n",
                       static_cast<long long>(layer.layer), static_cast<long long>(t.head),
                       static_cast<long long>(A), static_cast<long long>(base_n), merge_s);
          sweep("graph_merged", grown, base_s + merge_s, {"ef", beam_sweep(k, N, 0.16)}, {&t});
          // The same appends with each query's decode answer, as a retriever passes them: query p searched
          // the graph (ef 2 Kq) at its step, when keys up to p - W had arrived (W = 512, the GPU window);
          // the merge then searches nothing for its queries (rows "graph_merged_answers").
          constexpr int64_t kWindow = 512;
          GraphBuildParams answered_params = gp;
          answered_params.merge_recent_keys = static_cast<int>(kWindow);
          const auto answered_ptr = make_graph(base_n, layer.q + t.head * T * D, base_n, answered_params);
          GraphIndex& answered = *answered_ptr;
          const int kq = gp.Kq;
          std::vector<int32_t> answers(static_cast<size_t>(A * kq), -1);
          std::vector<int64_t> ids(static_cast<size_t>(kq));
          std::vector<float> scores(static_cast<size_t>(kq));
          auto answer = [&](int64_t p) {
            const int got = answered.search(layer.q + (t.head * T + p) * D, SearchParams{.k = kq, .ef = 2 * kq},
                                            ids.data(), scores.data(), nullptr);
            for (int j = 0; j < got; ++j) answers[static_cast<size_t>((p - base_n) * kq + j)] = static_cast<int32_t>(ids[j]);
          };
          for (int64_t p = base_n; p < std::min(N, base_n + kWindow); ++p) answer(p);
          double answered_merge_s = 0;
          for (int64_t i = base_n; i < N; ++i) {  // step i + W: key i leaves the window, query i + W searches
            const float* q = layer.q + (t.head * T + i) * D;
            const int32_t* a = answers.data() + (i - base_n) * kq;
            rounded ? answered.adopt_next_row(q, 1, a, kq) : answered.append(keys + i * D, q, a, kq);
            if (i + kWindow < N) answer(i + kWindow);
          }
          const auto answered_start = Clock::now();
          answered.merge_tail();
          answered_merge_s = seconds_since(answered_start);
          std::fprintf(stderr, "layer %lld head %lld: merged them with their decode answers in %.2f s\n",
                       static_cast<long long>(layer.layer), static_cast<long long>(t.head), answered_merge_s);
          sweep("graph_merged_answers", answered, base_s + answered_merge_s, {"ef", beam_sweep(k, N, 0.16)}, {&t});
        }
      }
    }
    if (wanted(config, "graph_kv") || wanted(config, "graph_kv_int8") || wanted(config, "graph_group")) {
      // One index per kv head, trained on every query head of its group: searched per query head
      // (graph_kv), or by the whole group per traversal (graph_group; needs all the group's heads).
      std::vector<float> train(static_cast<size_t>(group * N * D));
      for (int64_t j = 0; j < group; ++j) {
        std::copy_n(layer.q + ((g * group + j) * T) * D, N * D, train.begin() + j * N * D);
      }
      GraphBuildParams kv_params = gp;
      if (kv_params.max_train_queries > 0) kv_params.max_train_queries *= static_cast<int>(group);
      // graph_kv_int8: the same graph walked on its 8-bit navigation copy (graph_kv walks the keys).
      kv_params.int8_navigation = wanted(config, "graph_kv_int8");
      const auto start = Clock::now();
      const auto graph = make_graph(N, train.data(), group * N, kv_params);
      const double build_s = seconds_since(start);
      if (wanted(config, "graph_kv")) {
        sweep("graph_kv", *graph, build_s, {"ef", beam_sweep(k, N, 0.16)}, all_heads, 0, /*exact_navigation=*/true);
      }
      if (wanted(config, "graph_kv_int8")) {
        sweep("graph_kv_int8", *graph, build_s, {"ef", beam_sweep(k, N, 0.16)}, all_heads);
      }
      if (wanted(config, "graph_kv") && config.graph_append > 0) {
        // The kv head's graph built on the first N - A keys; the last A arrive as decode evictions, each
        // with its group's queries and their lagged decode answers (as a retriever hands them over), and
        // are merged: every member's query projected (rows graph_kv_merged), or only member i mod group's
        // for key i (rows graph_kv_merged_one: a quarter of the merge's query work at group 4).
        const int64_t A = config.graph_append, base_n = N - A;
        constexpr int64_t kWindow = 512;
        std::shared_ptr<const RowArena> arena = rounded;
        if (!arena) {  // adopt_next_row needs a shared arena: the float32 keys in one
          auto own = std::make_shared<RowArena>(KvDtype::kF32, D, N);
          own->append(keys, N);
          arena = own;
        }
        std::vector<float> base_train(static_cast<size_t>(group * base_n * D));
        for (int64_t j = 0; j < group; ++j) {
          std::copy_n(train.begin() + j * N * D, base_n * D, base_train.begin() + j * base_n * D);
        }
        GraphBuildParams merge_params = kv_params;
        merge_params.int8_navigation = false;
        merge_params.merge_recent_keys = static_cast<int>(kWindow);
        const int kq = merge_params.Kq;
        for (const bool one : {false, true}) {
          const auto t0 = Clock::now();
          GraphIndex grown(arena, base_n, base_train.data(), group * base_n, merge_params);
          const double base_s = seconds_since(t0);
          // answers[(i - base_n)][member][kq]: member's answer at step i (keys up to i - W offloaded).
          std::vector<int32_t> answers(static_cast<size_t>(A * group * kq), -1);
          std::vector<int64_t> ids(static_cast<size_t>(kq));
          std::vector<float> scores(static_cast<size_t>(kq));
          auto answer = [&](int64_t p) {
            for (int64_t j = 0; j < group; ++j) {
              const int got = grown.search(train.data() + (j * N + p) * D, SearchParams{.k = kq, .ef = 2 * kq},
                                           ids.data(), scores.data(), nullptr);
              int32_t* row = answers.data() + ((p - base_n) * group + j) * kq;
              for (int r = 0; r < got; ++r) row[r] = static_cast<int32_t>(ids[static_cast<size_t>(r)]);
            }
          };
          for (int64_t p = base_n; p < std::min(N, base_n + kWindow); ++p) answer(p);
          std::vector<float> member_queries(static_cast<size_t>(group * D));
          for (int64_t i = base_n; i < N; ++i) {
            for (int64_t j = 0; j < group; ++j) {
              std::copy_n(train.begin() + (j * N + i) * D, D, member_queries.begin() + j * D);
            }
            const int32_t* a = answers.data() + (i - base_n) * group * kq;
            if (one) {
              const int64_t m = i % group;
              grown.adopt_next_row(member_queries.data() + m * D, 1, a + m * kq, kq);
            } else {
              grown.adopt_next_row(member_queries.data(), static_cast<int>(group), a, kq);
            }
            if (i + kWindow < N) answer(i + kWindow);
          }
          const auto m0 = Clock::now();
          grown.merge_tail();
          const double merge_s = seconds_since(m0);
          const char* name = one ? "graph_kv_merged_one" : "graph_kv_merged";
          std::fprintf(stderr, "layer %lld kv head %lld: %s: merged %lld keys into a %lld-key graph in %.2f s\n",
                       static_cast<long long>(layer.layer), static_cast<long long>(g), name,
                       static_cast<long long>(A), static_cast<long long>(base_n), merge_s);
          sweep(name, grown, base_s + merge_s, {"ef", beam_sweep(k, N, 0.16)}, all_heads, 0, /*exact_navigation=*/true);
        }
      }
      if (wanted(config, "graph_group")) {
        RA_REQUIRE(static_cast<int64_t>(all_heads.size()) == group,
                   "index graph_group searches a kv head's whole group: --heads must list all {} of kv head {}",
                   group, g);
        for (int ef : beam_sweep(k, N, 0.16)) {
          SearchParams p;
          p.k = k;
          p.ef = ef;
          RowAccumulator& row = row_for(rows, order, "graph_group", fmt::format("ef={}", ef));
          evaluate_group(*graph, p, all_heads, store, layer, N, threads, row);
          row.build_s_sum += build_s;
          row.index_bytes_sum += static_cast<double>(graph->memory_bytes());
          row.instances += 1;
        }
      }
    }
  }
}

double scanned_at_recall(const std::map<std::string, RowAccumulator>& rows, const std::vector<std::string>& order,
                         const std::string& index, int64_t layer, double target) {
  double prev_recall = 0, prev_scanned = 0;
  bool have_prev = false;
  for (const auto& key : order) {
    const RowAccumulator& r = rows.at(key);
    if (r.index != index) continue;
    double recall = 0, scanned = 0;
    if (layer < 0) {
      if (r.queries == 0) continue;
      recall = r.recall_sum / double(r.queries);
      scanned = r.scanned_sum / double(r.queries);
    } else {
      const auto it = r.per_layer.find(layer);
      if (it == r.per_layer.end() || it->second.queries == 0) continue;
      recall = it->second.recall_sum / double(it->second.queries);
      scanned = it->second.scanned_sum / double(it->second.queries);
    }
    if (recall >= target) {
      if (!have_prev || recall <= prev_recall) return scanned;
      const double t = (target - prev_recall) / (recall - prev_recall);
      return prev_scanned + std::max(0.0, t) * (scanned - prev_scanned);
    }
    prev_recall = recall;
    prev_scanned = scanned;
    have_prev = true;
  }
  return std::nan("");
}

std::string layer_comparison_table(const std::map<std::string, RowAccumulator>& rows,
                                   const std::vector<std::string>& order, const std::vector<double>& targets) {
  std::vector<std::string> indexes;  // in sweep order, without flat (always 100%)
  std::vector<int64_t> layers;
  for (const auto& key : order) {
    const RowAccumulator& r = rows.at(key);
    if (r.index != "flat" && std::find(indexes.begin(), indexes.end(), r.index) == indexes.end()) {
      indexes.push_back(r.index);
    }
    for (const auto& [l, sums] : r.per_layer) {
      if (std::find(layers.begin(), layers.end(), l) == layers.end()) layers.push_back(l);
    }
  }
  std::sort(layers.begin(), layers.end());
  layers.push_back(-1);  // all layers together
  auto pct = [](double x) { return std::isnan(x) ? std::string("-") : fmt::format("{:.2f}%", 100 * x); };
  auto ratio = [](double faiss, double graph) {
    return !std::isnan(graph) && !std::isnan(faiss) && graph > 0 ? fmt::format("{:.2f}x", faiss / graph)
                                                                 : std::string("-");
  };
  // Decode-order rows get their own ratio: their seeds come from the previous positions' answers.
  const bool warm = std::find(indexes.begin(), indexes.end(), "graph_warm") != indexes.end();
  std::string out;
  for (double target : targets) {
    out += fmt::format("keys scanned for mean recall >= {:.2f}, per layer ('-': not reached):\n{:<6}", target, "layer");
    for (const auto& name : indexes) out += fmt::format(" {:>10}", name);
    out += fmt::format(" {:>11}", "faiss/graph");
    out += warm ? fmt::format(" {:>10}\n", "faiss/warm") : std::string("\n");
    for (int64_t l : layers) {
      out += fmt::format("{:<6}", l < 0 ? std::string("all") : std::to_string(l));
      double graph = std::nan(""), graph_warm = std::nan(""), best_faiss = std::nan("");
      for (const auto& name : indexes) {
        const double s = scanned_at_recall(rows, order, name, l, target);
        out += fmt::format(" {:>10}", pct(s));
        if (name == "graph") graph = s;
        if (name == "graph_warm") graph_warm = s;
        if ((name == "ivf" || name == "hnsw") && !std::isnan(s)) best_faiss = std::isnan(best_faiss) ? s : std::min(best_faiss, s);
      }
      out += fmt::format(" {:>11}", ratio(best_faiss, graph));
      out += warm ? fmt::format(" {:>10}\n", ratio(best_faiss, graph_warm)) : std::string("\n");
    }
  }
  return out;
}

std::string row_json(const RowAccumulator& r) {
  const double q = r.queries > 0 ? static_cast<double>(r.queries) : 1.0;
  double worst = 1.0;
  for (const auto& [head, sum_n] : r.head_recall) worst = std::min(worst, sum_n.first / double(sum_n.second));
  const double inst = r.instances > 0 ? static_cast<double>(r.instances) : 1.0;
  std::string layers;
  for (const auto& [l, sums] : r.per_layer) {
    const double lq = sums.queries > 0 ? static_cast<double>(sums.queries) : 1.0;
    layers += fmt::format(R"({}"{}": {{"recall": {:.5f}, "scanned": {:.6f}}})", layers.empty() ? "" : ", ", l,
                          sums.recall_sum / lq, sums.scanned_sum / lq);
  }
  return fmt::format(
      R"({{"index": "{}", "knob": "{}", "recall": {:.5f}, "worst_head_recall": {:.5f}, "scanned": {:.6f}, )"
      R"("us_per_query": {:.2f}, "build_s": {:.4f}, "index_bytes": {:.0f}, "attn_rel_err": {:.6f}, )"
      R"("queries": {}, "heads": {}, "layers": {{{}}}}})",
      r.index, r.knob, r.recall_sum / q, worst, r.scanned_sum / q, r.us_sum / q, r.build_s_sum / inst,
      r.index_bytes_sum / inst, r.attn_err_sum / q, r.queries, r.head_recall.size(), layers);
}

}  // namespace ra::retriever
