// ra-bench-search: the retriever's per-layer search on synthetic keys, as one retriever rank runs it at
// decode, without the GPU or the transport. It builds `shards` HeadShards (one per (layer, kv head) a
// rank owns) of N bf16 keys each, with a graph per kv head trained by `train` queries of each of the
// group's query heads, then runs decode "layers": each layer searches every query head of `heads_per_layer
// / group` shards (one work item per query head, OpenMP dynamic schedule over `threads` threads), as
// RetrieverService::on_step does, and moves on to the next shards, so the keys come from memory and not
// from the cache of the previous layer.
//
//   ra-bench-search [--context 131072] [--shards 8] [--heads-per-layer 8] [--group 4] [--train 2048]
//                   [--k 100] [--ef 0] [--warm 2] [--threads 4[,8,...]] [--pin 0|1] [--interleave 1,2]
//                   [--layers 256] [--rounds 3] [--dim 128] [--efc 32] [--connect-max-in 0] [--connect-query-lists 1] [--seed 1] [--navigation exact,int8]
//                   [--given-lists 0|1] [--expand 1,2] [--grouped 0,2,4] [--query-corr R] [--tail T] [--kv-dtype bf16]
//                   [--json FILE]
//
// Keys and queries are iid Gaussian: the geometry of a random-weight model's post-RoPE keys, where
// attention is diffuse and a graph search scans the most (what the GPU machine's timing runs use).
// --interleave: the separate searches one thread steps in turn (HeadShard::search_attend_interleaved,
// the retriever's index.graph_interleave); each width runs --layers layers per round, alternating.
// --navigation: what the searches walk, the bf16 keys (exact) or the graph's 8-bit copy (int8,
// navigation_keys.h; built when listed). --expand: nodes a search expands per step (SearchParams::expand).
// --grouped 0,N: 0 runs separate searches per query head (with the --interleave widths); N >= 2 runs one
// traversal of the kv head's graph for N query heads of its group (search_attend_group, the retriever's
// index.graph_heads_per_search = N; N divides --group): a work item is N heads, --interleave does not
// apply; rows count each fetched row once per head scored, hops are per traversal. --query-corr R: the
// expected cosine between the queries of a group's heads (0: independent, as random weights give; a
// grouped traversal's union of beams shrinks as R grows), the training queries drawn alike.
// --kv-dtype: the shards' KV store, bf16 (default) or int8 (codes and a scale per row, walked in place;
// --navigation int8 is then refused), or keys and values apart (int8/bf16). After the build it prints the
// shards' memory per token: store rows and index structures (the graph's adjacency, entries, ...).
// --given-lists 1: every training query's top Kq keys and every key's best training query found (exact, BLAS)
// before the build and handed to it, as the CUDA worker sends them with a layer: the build time is then the
// retriever's share only (project, connect, prune, ...), what decides the build tail at 128K.
// --tail T: T evicted tokens appended to every shard after its build and left in the graph's flat tail
// (no merges), which every search scans exactly: what a search pays while merges lag behind.
// --threads: one or more team sizes (a scaling curve from one build); --pin 1 pins team thread i to the
// i-th CPU this process may run on, as a retriever pins its team (launcher/ranks/thread_pinning.h).
// Every combination of threads, navigation, width and expand is a configuration; searches_per_s in the
// JSON is a layer's searches over its mean wall time.
// Prints the build time, then per configuration the wall time of a layer (one rank's share of a decode layer)
// and per search the rows scored, the hops, a thread's microseconds and its nanoseconds per row; then
// busy_max / busy_avg: per layer, the busiest team thread's search time and the team's mean (a layer
// lasts as long as its busiest thread).

#include <omp.h>
#include <sched.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cmath>
#include <cstring>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "cpu_retriever/blas_top_k.h"
#include "cpu_retriever/graph_build.h"
#include "cpu_retriever/head_shard.h"
#include "launcher/ranks/thread_pinning.h"

namespace {

using Clock = std::chrono::steady_clock;
using ra::retriever::HeadShard;
using ra::retriever::SearchParams;
using ra::retriever::SearchStats;
using ra::retriever::ShardIndexParams;
using ra::retriever::ShardScratch;

struct Options {
  int64_t context = 131072;
  int shards = 8;
  int heads_per_layer = 8;
  int group = 4;
  int64_t train = 2048;
  int k = 100;
  int ef = 0;
  int warm = 2;
  std::vector<int> threads{4};
  bool pin = false;
  std::vector<int> interleave{1, 2};
  std::vector<std::string> navigation{"exact"};
  std::vector<int> expand{1};
  std::vector<int> grouped{0};  // 0: per-head searches; N >= 2: N heads per traversal
  double query_corr = 0;
  int rounds = 3;
  int layers = 256;
  int64_t dim = 128;
  int efc = 32;
  int connect_max_in = 0;  // GraphBuildParams::connect_max_in_degree
  int connect_query_lists = 1;  // GraphBuildParams::connect_query_lists
  bool given_lists = false;     // training lists and key queries found before the build, as the GPU sends them
  int64_t tail = 0;
  uint64_t seed = 1;
  std::string json;
  std::string kv_dtype = "bf16";  // the shards' store (cpu_retriever/kv_dtype.h: bf16, int8, int8/bf16, ...)
};

std::vector<int> parse_list(const char* s) {
  std::vector<int> out;
  for (const char* p = s; *p != '\0';) {
    char* end = nullptr;
    out.push_back(static_cast<int>(std::strtol(p, &end, 10)));
    if (end == p) break;
    p = *end == ',' ? end + 1 : end;
  }
  return out;
}

std::vector<std::string> parse_words(const char* s) {
  std::vector<std::string> out;
  std::string cur;
  for (const char* p = s;; ++p) {
    if (*p == ',' || *p == '\0') {
      if (!cur.empty()) out.push_back(cur);
      cur.clear();
      if (*p == '\0') break;
    } else {
      cur += *p;
    }
  }
  return out;
}

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr, "ra-bench-search: %s\n", why);
  std::exit(2);
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) usage(("missing value after " + a).c_str());
    const char* v = argv[++i];
    const auto num = [&] { return std::strtoll(v, nullptr, 10); };
    if (a == "--context") o.context = num();
    else if (a == "--shards") o.shards = static_cast<int>(num());
    else if (a == "--heads-per-layer") o.heads_per_layer = static_cast<int>(num());
    else if (a == "--group") o.group = static_cast<int>(num());
    else if (a == "--train") o.train = num();
    else if (a == "--k") o.k = static_cast<int>(num());
    else if (a == "--ef") o.ef = static_cast<int>(num());
    else if (a == "--warm") o.warm = static_cast<int>(num());
    else if (a == "--threads") o.threads = parse_list(v);
    else if (a == "--pin") o.pin = num() != 0;
    else if (a == "--interleave") o.interleave = parse_list(v);
    else if (a == "--rounds") o.rounds = static_cast<int>(num());
    else if (a == "--layers") o.layers = static_cast<int>(num());
    else if (a == "--dim") o.dim = num();
    else if (a == "--efc") o.efc = static_cast<int>(num());
    else if (a == "--connect-max-in") o.connect_max_in = static_cast<int>(num());
    else if (a == "--connect-query-lists") o.connect_query_lists = static_cast<int>(num());
    else if (a == "--given-lists") o.given_lists = num() != 0;
    else if (a == "--tail") o.tail = static_cast<int64_t>(num());
    else if (a == "--seed") o.seed = static_cast<uint64_t>(num());
    else if (a == "--json") o.json = v;
    else if (a == "--navigation") o.navigation = parse_words(v);
    else if (a == "--expand") o.expand = parse_list(v);
    else if (a == "--grouped") o.grouped = parse_list(v);
    else if (a == "--query-corr") o.query_corr = std::strtod(v, nullptr);
    else if (a == "--kv-dtype") o.kv_dtype = v;
    else usage(("unknown option " + a).c_str());
  }
  if (o.context < 1 || o.shards < 1 || o.group < 1 || o.heads_per_layer < o.group ||
      o.heads_per_layer % o.group != 0 || o.heads_per_layer / o.group > o.shards || o.threads.empty() ||
      *std::min_element(o.threads.begin(), o.threads.end()) < 1 ||
      o.layers < 1 || o.rounds < 1 || o.k < 1 || o.dim < 1 || o.train < 1) {
    usage("bad options: need heads-per-layer a multiple of group, at most shards * group of them");
  }
  for (const std::string& n : o.navigation) {
    if (n != "exact" && n != "int8") usage("--navigation takes exact and/or int8");
  }
  for (const int w : o.interleave) {
    if (w < 1 || o.group % w != 0 || w > 8) usage("every --interleave width must divide --group (and be <= 8)");
  }
  if (!(o.query_corr >= 0 && o.query_corr <= 1)) usage("--query-corr takes a value in [0, 1]");
  for (const int n : o.grouped) {
    if (n != 0 && (n < 2 || o.group % n != 0)) usage("every --grouped value must be 0 or divide --group (>= 2)");
  }
  return o;
}

std::vector<float> gaussian(int64_t n, int64_t dim, std::mt19937_64& rng) {
  std::normal_distribution<float> g(0.f, 1.f);
  std::vector<float> out(static_cast<size_t>(n * dim));
  for (auto& x : out) x = g(rng);
  return out;
}

// [group][n][dim]: query t of every head of the group shares sqrt(r) of one Gaussian, the rest its own, so
// two heads' queries at one position have expected cosine r.
std::vector<float> group_queries(int group, int64_t n, int64_t dim, double r, std::mt19937_64& rng) {
  std::normal_distribution<float> g(0.f, 1.f);
  const float own_w = std::sqrt(1.f - static_cast<float>(r)), shared_w = std::sqrt(static_cast<float>(r));
  std::vector<float> out(static_cast<size_t>(group * n * dim));
  std::vector<float> shared(static_cast<size_t>(dim));
  for (int64_t t = 0; t < n; ++t) {
    for (auto& x : shared) x = g(rng);
    for (int h = 0; h < group; ++h) {
      float* qt = out.data() + (h * n + t) * dim;
      for (int64_t d = 0; d < dim; ++d) qt[d] = own_w * g(rng) + shared_w * shared[static_cast<size_t>(d)];
    }
  }
  return out;
}

// What the CUDA worker sends with a layer (TrainListOptions): every training query's top kq keys and every
// key's best training query, exact by BLAS here, so that the timed build is the retriever's share only.
struct GivenLists {
  std::vector<int32_t> lists;        // [n_train][kq]
  std::vector<int32_t> key_queries;  // [n]
};
GivenLists given_lists(const std::vector<float>& keys, const std::vector<float>& train, int64_t n, int64_t n_train,
                       int64_t dim, int kq) {
  GivenLists out;
  std::vector<int64_t> ids(static_cast<size_t>(n_train * kq));
  std::vector<float> scores(ids.size());
  ra::retriever::blas_top_k_batch(train.data(), n_train, keys.data(), n, dim, kq, ids.data(), scores.data(), 0);
  out.lists.assign(ids.begin(), ids.end());
  ids.resize(static_cast<size_t>(n));
  scores.resize(ids.size());
  ra::retriever::blas_top_k_batch(keys.data(), n, train.data(), n_train, dim, 1, ids.data(), scores.data(), 0);
  out.key_queries.assign(ids.begin(), ids.end());
  return out;
}

double percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v[static_cast<size_t>(p * static_cast<double>(v.size() - 1))];
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  std::mt19937_64 rng(o.seed);
  ShardIndexParams params;
  params.kind = ra::retriever::IndexKind::kGraph;
  params.graph_per_kv_head = true;
  params.warm_history = o.warm;
  params.graph.M = 32;
  params.graph.Kq = 100;
  params.graph.ef_construction = o.efc;
  params.graph.connect_max_in_degree = o.connect_max_in;
  params.graph.connect_query_lists = o.connect_query_lists;
  params.graph.key_lists_stride = 0;
  params.graph.seed = o.seed;
  params.graph.threads = 0;
  params.graph.int8_navigation =
      std::find(o.navigation.begin(), o.navigation.end(), "int8") != o.navigation.end();

  const ra::retriever::KvDtypes dtypes = ra::retriever::parse_kv_dtypes(o.kv_dtype);
  if (dtypes.key == ra::retriever::KvDtype::kQ8 && params.graph.int8_navigation) {
    usage("--navigation int8 walks an 8-bit copy of bf16 keys; with --kv-dtype int8 keys the graph walks them in "
          "place: use --navigation exact");
  }

  // Build: the wall time of the shards' constructors only (not the data, nor the given lists).
  double build_s = 0;
  std::vector<std::unique_ptr<HeadShard>> shards;
  for (int s = 0; s < o.shards; ++s) {
    const std::vector<float> keys = gaussian(o.context, o.dim, rng);
    const std::vector<float> values = gaussian(o.context, o.dim, rng);
    const std::vector<float> train = group_queries(o.group, o.train, o.dim, o.query_corr, rng);
    params.stagger_key = s;
    const GivenLists given = o.given_lists ? given_lists(keys, train, o.context, o.group * o.train, o.dim, params.graph.Kq)
                                           : GivenLists{};
    const auto t_build = Clock::now();
    shards.push_back(std::make_unique<HeadShard>(
        o.dim, dtypes, keys.data(), values.data(), o.context, o.group, train.data(), o.train, params,
        o.given_lists ? given.lists.data() : nullptr, o.given_lists ? params.graph.Kq : 0,
        o.given_lists ? ra::retriever::KeyQueries{given.key_queries.data(), 1} : ra::retriever::KeyQueries{}));
    build_s += std::chrono::duration<double>(Clock::now() - t_build).count();
    const std::vector<float> tail_keys = gaussian(o.tail, o.dim, rng);
    const std::vector<float> tail_values = gaussian(o.tail, o.dim, rng);
    for (int64_t t = 0; t < o.tail; ++t) {
      shards.back()->append(tail_keys.data() + t * o.dim, tail_values.data() + t * o.dim);
    }
    std::fprintf(stderr, "shard %d built\n", s);
  }
  std::printf("graph build steps (wall time summed over builds): %s\n",
              ra::retriever::describe_graph_build_steps(ra::retriever::graph_build_steps()).c_str());
  size_t kv_bytes = 0, all_bytes = 0;
  for (const auto& s : shards) kv_bytes += s->kv_bytes(), all_bytes += s->memory_bytes();
  const double tokens = static_cast<double>(o.shards) * static_cast<double>(o.context + o.tail);
  std::printf("memory (%s KV): %.1f bytes per token per shard: %.1f of K and V rows, %.1f of indexes\n",
              ra::retriever::kv_dtypes_name(dtypes).c_str(), static_cast<double>(all_bytes) / tokens,
              static_cast<double>(kv_bytes) / tokens, static_cast<double>(all_bytes - kv_bytes) / tokens);

  // Decode layers: a fresh query per head and layer. Each interleave width runs `layers` layers per
  // round, the widths alternating over `rounds` rounds, so machine noise hits them alike.
  const int per_layer_shards = o.heads_per_layer / o.group;
  const int warmup = 2 * o.shards / per_layer_shards;  // every shard searched twice first
  const int max_threads = *std::max_element(o.threads.begin(), o.threads.end());
  std::vector<ShardScratch> scratch(static_cast<size_t>(max_threads));
  // --pin: the CPUs this process may run on, read before any pinning narrows them. libgomp releases
  // the pool threads a smaller team leaves out and starts new ones when a larger team follows, and a
  // new thread inherits the CPU of the (pinned) thread that starts it: so every switch of team size
  // pins the team again (outside the timed layers), or a regrown team would pile onto one core.
  std::vector<int> cpus;
  if (o.pin) {
    cpu_set_t allowed;
    CPU_ZERO(&allowed);
    if (sched_getaffinity(0, sizeof(allowed), &allowed) == 0) {
      for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
        if (CPU_ISSET(cpu, &allowed)) cpus.push_back(cpu);
      }
    }
  }
  int pinned_team = 0;
  auto pin_team = [&](int threads) {
    if (!o.pin || threads == pinned_team) return;
    std::string report;
    ra::pin_openmp_team(cpus, threads, &report);
    if (pinned_team == 0 || threads == max_threads) std::fprintf(stderr, "ra-bench-search: %s\n", report.c_str());
    pinned_team = threads;
  };
  std::vector<float> out(static_cast<size_t>(o.heads_per_layer * o.dim));
  std::vector<float> lse(static_cast<size_t>(o.heads_per_layer));
  std::vector<SearchStats> stats(static_cast<size_t>(o.heads_per_layer));
  std::vector<double> search_ns(static_cast<size_t>(o.heads_per_layer));
  std::vector<double> busy_ns(static_cast<size_t>(max_threads));  // per team thread, this layer
  SearchParams sp{o.k, o.ef, 0};
  const float scale = 1.0f / std::sqrt(static_cast<float>(o.dim));
  std::vector<float> q(static_cast<size_t>(o.heads_per_layer * o.dim));
  auto draw_queries = [&] {  // a layer's: [heads][dim], each group's heads correlated as in training
    for (int h = 0; h < o.heads_per_layer; h += o.group) {
      const std::vector<float> one = group_queries(o.group, 1, o.dim, o.query_corr, rng);
      std::copy(one.begin(), one.end(), q.begin() + h * o.dim);
    }
  };
  struct Totals {
    std::vector<double> layer_us;
    int64_t rows = 0, hops = 0, searches = 0, traversals = 0;
    double thread_ns = 0;
    double busy_max_us = 0, busy_mean_us = 0;  // summed over layers: the busiest thread's, the team's mean
  };
  struct Config {
    int threads;
    std::string navigation;
    int width;
    int expand;
    bool grouped;
  };
  std::vector<Config> configs;
  for (const int t : o.threads) {
    for (const std::string& n : o.navigation) {
      for (const int gr : o.grouped) {
        if (gr >= 2) {  // gr heads per item, one traversal; the interleave widths do not apply
          for (const int x : o.expand) configs.push_back({t, n, gr, x, true});
          continue;
        }
        for (const int w : o.interleave) {
          for (const int x : o.expand) configs.push_back({t, n, w, x, false});
        }
      }
    }
  }
  std::vector<Totals> totals(configs.size());
  int layer_no = 0;
  auto run_layer = [&](const Config& c, Totals* t) {
    const int width = c.width;
    sp.exact_navigation = c.navigation == "exact";
    sp.expand = c.expand;
    const int first_shard = (layer_no++ * per_layer_shards) % o.shards;
    draw_queries();
    std::fill(stats.begin(), stats.end(), SearchStats{});
    std::fill(busy_ns.begin(), busy_ns.end(), 0.0);
    const auto t0 = Clock::now();
    const int items = o.heads_per_layer / width;
#pragma omp parallel for num_threads(c.threads) schedule(dynamic, 1)
    for (int item = 0; item < items; ++item) {
      const int e = item * width;  // its first query head
      const auto ts = Clock::now();
      HeadShard& shard = *shards[static_cast<size_t>((first_shard + e / o.group) % o.shards)];
      ShardScratch& ts_scratch = scratch[static_cast<size_t>(omp_get_thread_num())];
      if (c.grouped) {
        shard.search_attend_group(e % o.group, width, q.data() + e * o.dim, sp, scale, ts_scratch, out.data() + e * o.dim,
                                  lse.data() + e, &stats[static_cast<size_t>(e)]);
      } else {
        shard.search_attend_interleaved(e % o.group, width, q.data() + e * o.dim, sp, scale, ts_scratch,
                                        out.data() + e * o.dim, lse.data() + e, &stats[static_cast<size_t>(e)]);
      }
      // a thread's time per search: the item's time shared by its searches
      const double ns = std::chrono::duration<double, std::nano>(Clock::now() - ts).count();
      for (int i = 0; i < width; ++i) search_ns[static_cast<size_t>(e + i)] = ns / width;
      busy_ns[static_cast<size_t>(omp_get_thread_num())] += ns;
    }
    const double us = std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
    if (t == nullptr) return;
    t->layer_us.push_back(us);
    const auto team = busy_ns.begin() + c.threads;
    t->busy_max_us += *std::max_element(busy_ns.begin(), team) / 1e3;
    t->busy_mean_us += std::accumulate(busy_ns.begin(), team, 0.0) / c.threads / 1e3;
    for (int i = 0; i < o.heads_per_layer; i += width) {
      t->rows += stats[static_cast<size_t>(i)].distance_computations;
      t->hops += stats[static_cast<size_t>(i)].hops;
    }
    for (int i = 0; i < o.heads_per_layer; ++i) t->thread_ns += search_ns[static_cast<size_t>(i)];
    t->searches += o.heads_per_layer;
    t->traversals += c.grouped ? o.heads_per_layer / width : o.heads_per_layer;
  };
  pin_team(configs[0].threads);
  for (int i = 0; i < warmup; ++i) run_layer(configs[0], nullptr);
  for (int round = 0; round < o.rounds; ++round) {
    for (size_t c = 0; c < configs.size(); ++c) {
      pin_team(configs[c].threads);
      for (int l = 0; l < o.layers; ++l) run_layer(configs[c], &totals[c]);
    }
  }

  std::printf("context %lld + %lld in the flat tail, %d shards, %d query heads per layer, k %d ef %d warm %d%s; "
              "build %.1f s\n",
              static_cast<long long>(o.context), static_cast<long long>(o.tail), o.shards, o.heads_per_layer,
              o.k, o.ef, o.warm, o.pin ? ", threads pinned" : "", build_s);
  std::printf("%7s %10s %10s %6s %10s %10s %10s %10s %8s %10s %10s %12s %9s %9s\n", "threads", "navigation", "search",
              "expand", "layer_p50", "layer_mean", "layer_p99", "rows", "hops", "us/search", "ns/row", "searches/s",
              "busy_max", "busy_avg");
  for (size_t c = 0; c < configs.size(); ++c) {
    const Totals& t = totals[c];
    const double searches = static_cast<double>(t.searches);
    const double rows_per = static_cast<double>(t.rows) / searches;
    const double hops_per = static_cast<double>(t.hops) / static_cast<double>(t.traversals);  // per traversal
    const double us_per = t.thread_ns / searches / 1e3;
    const double ns_row = t.thread_ns / static_cast<double>(t.rows);
    double mean = 0;
    for (double v : t.layer_us) mean += v;
    mean /= static_cast<double>(t.layer_us.size());
    const double p50 = percentile(t.layer_us, 0.5), p99 = percentile(t.layer_us, 0.99);
    // A layer waits for its busiest thread: busy_max against busy_avg is the imbalance, layer_mean
    // against busy_max the fork, join and wake-ups.
    const double layers = static_cast<double>(t.layer_us.size());
    const double busy_max = t.busy_max_us / layers, busy_avg = t.busy_mean_us / layers;
    const double per_s = 1e6 * o.heads_per_layer / mean;
    const std::string search =
        (configs[c].grouped ? "group" : "inter") + std::to_string(configs[c].width);
    std::printf("%7d %10s %10s %6d %10.1f %10.1f %10.1f %10.0f %8.1f %10.1f %10.1f %12.0f %9.1f %9.1f\n",
                configs[c].threads, configs[c].navigation.c_str(), search.c_str(), configs[c].expand, p50, mean, p99,
                rows_per, hops_per, us_per, ns_row, per_s, busy_max, busy_avg);
    if (o.json.empty()) continue;
    if (FILE* f = std::fopen(o.json.c_str(), "a")) {
      std::fprintf(f,
                   "{\"context\":%lld,\"shards\":%d,\"heads_per_layer\":%d,\"threads\":%d,\"navigation\":\"%s\","
                   "\"interleave\":%d,\"grouped\":%s,\"expand\":%d,"
                   "\"query_corr\":%.3f,\"k\":%d,\"ef\":%d,\"warm\":%d,\"build_s\":%.3f,\"layer_us_p50\":%.2f,\"layer_us_mean\":%.2f,"
                   "\"layer_us_p99\":%.2f,\"rows_per_search\":%.1f,\"hops_per_search\":%.2f,"
                   "\"us_per_search\":%.2f,\"ns_per_row\":%.2f,\"searches_per_s\":%.1f,\"busy_max_us\":%.2f,\"busy_mean_us\":%.2f,\"pinned\":%s}\n",
                   static_cast<long long>(o.context), o.shards, o.heads_per_layer, configs[c].threads,
                   configs[c].navigation.c_str(), configs[c].width, configs[c].grouped ? "true" : "false",
                   configs[c].expand, o.query_corr, o.k,
                   o.ef, o.warm, build_s, p50, mean, p99, rows_per, hops_per, us_per, ns_row, per_s, busy_max, busy_avg,
                   o.pin ? "true" : "false");
      std::fclose(f);
    }
  }
  return 0;
}
