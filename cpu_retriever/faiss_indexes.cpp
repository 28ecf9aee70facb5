#include "cpu_retriever/faiss_indexes.h"

#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIVF.h>
#include <faiss/IndexIVFFlat.h>
#include <faiss/impl/FaissException.h>
#include <faiss/impl/io.h>
#include <faiss/index_io.h>
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <exception>
#include <queue>
#include <utility>
#include <string>
#include <vector>

#include "common/error.h"
#include "cpu_retriever/flat_index.h"

namespace ra::retriever {
namespace {

using faiss_idx = faiss::Index::idx_t;

// Runs FAISS on the calling thread only for the guard's lifetime, restoring the caller's setting.
class SingleThreadedOmp {
 public:
  SingleThreadedOmp() : saved_(omp_get_max_threads()) { omp_set_num_threads(1); }
  ~SingleThreadedOmp() { omp_set_num_threads(saved_); }
  SingleThreadedOmp(const SingleThreadedOmp&) = delete;
  SingleThreadedOmp& operator=(const SingleThreadedOmp&) = delete;

 private:
  int saved_;
};

// Turns the valid prefix of FAISS's labels (-1 marks an empty slot) into our output; returns the count.
int copy_results(const std::vector<faiss_idx>& labels, const std::vector<float>& dis, int64_t* ids,
                 float* scores) {
  int got = 0;
  for (size_t r = 0; r < labels.size(); ++r) {
    if (labels[r] < 0) continue;
    ids[got] = labels[r];
    scores[got] = dis[r];
    ++got;
  }
  return got;
}

void check_shape(const char* what, const float* keys, int64_t n, int64_t dim) {
  RA_REQUIRE(n > 0, "{}: need at least one key, got n = {}", what, n);
  RA_REQUIRE(dim > 0, "{}: dim must be > 0, got {}", what, dim);
  RA_REQUIRE(keys != nullptr, "{}: null key matrix", what);
  RA_REQUIRE(n <= INT32_MAX, "{}: FAISS indexes hold at most 2^31-1 keys, got {}", what, n);
}

// ---- IVF ----------------------------------------------------------------------------------------

class IvfFlatIndex final : public KeyIndex {
 public:
  IvfFlatIndex(const float* keys, int64_t n, int64_t dim, int nlist, uint64_t seed) {
    auto quantizer = std::make_unique<faiss::IndexFlatIP>(static_cast<faiss_idx>(dim));
    ivf_ = std::make_unique<faiss::IndexIVFFlat>(quantizer.get(), static_cast<size_t>(dim),
                                                 static_cast<size_t>(nlist), faiss::METRIC_INNER_PRODUCT);
    ivf_->own_fields = true;  // the quantizer is the index's, as in one read_index makes
    quantizer.release();
    nlist_ = nlist;
    ivf_->cp.seed = static_cast<int>(seed);
    ivf_->cp.verbose = false;
    ivf_->verbose = false;
    ivf_->train(static_cast<faiss_idx>(n), keys);
    ivf_->add(static_cast<faiss_idx>(n), keys);
  }
  // An index faiss::read_index made (read_ivf_flat_index checked its types).
  explicit IvfFlatIndex(std::unique_ptr<faiss::IndexIVFFlat> ivf)
      : ivf_(std::move(ivf)), nlist_(static_cast<int>(ivf_->nlist)) {}
  const faiss::Index& faiss_index() const { return *ivf_; }

  std::string name() const override { return "ivf_flat"; }
  int64_t size() const override { return ivf_->ntotal; }
  int64_t dim() const override { return ivf_->d; }

  size_t memory_bytes() const override {
    size_t bytes = static_cast<size_t>(nlist_) * static_cast<size_t>(ivf_->d) * sizeof(float);  // centroids
    for (int l = 0; l < nlist_; ++l) {
      bytes += ivf_->invlists->list_size(l) * (ivf_->code_size + sizeof(faiss_idx));
    }
    return bytes;
  }

  int search(const float* q, const SearchParams& params, int64_t* ids, float* scores,
             SearchStats* stats) const override {
    RA_REQUIRE(params.k >= 0, "ivf_flat search: k must be >= 0, got {}", params.k);
    const int64_t k = std::min<int64_t>(params.k, ivf_->ntotal);
    if (k == 0) return 0;
    const int nprobe = params.nprobe > 0 ? std::min(params.nprobe, nlist_)
                                         : std::max(1, nlist_ / 16);
    try {
      SingleThreadedOmp one_thread;
      // Quantize ourselves so the scanned lists (and hence the work) are known for this call alone;
      // faiss::indexIVF_stats is a process-wide global that concurrent searches would race on.
      std::vector<faiss_idx> assign(static_cast<size_t>(nprobe));
      std::vector<float> centroid_dis(static_cast<size_t>(nprobe));
      ivf_->quantizer->search(1, q, nprobe, centroid_dis.data(), assign.data());
      int64_t scanned = 0;
      for (faiss_idx list : assign) {
        if (list >= 0) scanned += static_cast<int64_t>(ivf_->invlists->list_size(list));
      }
      faiss::SearchParametersIVF sp;
      sp.nprobe = static_cast<size_t>(nprobe);
      faiss::IndexIVFStats call_stats;  // local, so search_preassigned does not touch the global
      std::vector<faiss_idx> labels(static_cast<size_t>(k));
      std::vector<float> dis(static_cast<size_t>(k));
      ivf_->search_preassigned(1, q, k, assign.data(), centroid_dis.data(), dis.data(), labels.data(),
                              /*store_pairs=*/false, &sp, &call_stats);
      if (stats != nullptr) stats->distance_computations += nlist_ + scanned;
      return copy_results(labels, dis, ids, scores);
    } catch (const faiss::FaissException& e) {
      ra::raise("ivf_flat search (nlist {}, nprobe {}, k {}): FAISS error: {}", nlist_, nprobe, k,
                e.what());
    }
  }

 private:
  std::unique_ptr<faiss::IndexIVFFlat> ivf_;  // owns its IndexFlatIP quantizer
  int nlist_ = 0;
};

// ---- HNSW ---------------------------------------------------------------------------------------

// FAISS 1.7.3's HNSW::search sizes its level-0 candidate queue by max(hnsw.efSearch, k), reading the
// index's own efSearch, and uses SearchParametersHNSW::efSearch only in its stopping test: a per-call
// efSearch larger than the stored one does not widen the beam (measured: efSearch 500 on 500 keys
// misses keys unless hnsw.efSearch is also raised). Setting hnsw.efSearch per call would race, so the
// graph is built by FAISS and searched here with the standard HNSW algorithm (greedy descent through
// the upper layers, then a best-first beam of width ef on layer 0), which honours ef per call and
// counts its own distance computations without FAISS's global hnsw_stats.
class HnswFlatIndex final : public KeyIndex {
 public:
  HnswFlatIndex(const float* keys, int64_t n, int64_t dim, int M, int ef_construction)
      : hnsw_(std::make_unique<faiss::IndexHNSWFlat>(static_cast<int>(dim), M, faiss::METRIC_INNER_PRODUCT)) {
    hnsw_->hnsw.efConstruction = ef_construction;
    hnsw_->verbose = false;
    hnsw_->add(static_cast<faiss_idx>(n), keys);
    xb_ = static_cast<const faiss::IndexFlat*>(hnsw_->storage)->get_xb();
  }
  // An index faiss::read_index made (read_hnsw_flat_index checked its types: the storage is an IndexFlat).
  explicit HnswFlatIndex(std::unique_ptr<faiss::IndexHNSWFlat> hnsw)
      : hnsw_(std::move(hnsw)), xb_(static_cast<const faiss::IndexFlat*>(hnsw_->storage)->get_xb()) {}
  const faiss::Index& faiss_index() const { return *hnsw_; }

  std::string name() const override { return "hnsw_flat"; }
  int64_t size() const override { return hnsw_->ntotal; }
  int64_t dim() const override { return hnsw_->d; }

  size_t memory_bytes() const override {
    const auto& h = hnsw_->hnsw;
    return static_cast<size_t>(hnsw_->ntotal) * static_cast<size_t>(hnsw_->d) * sizeof(float) +  // storage
           h.neighbors.size() * sizeof(h.neighbors[0]) + h.offsets.size() * sizeof(h.offsets[0]) +
           h.levels.size() * sizeof(h.levels[0]);
  }

  int search(const float* q, const SearchParams& params, int64_t* ids, float* scores,
             SearchStats* stats) const override {
    RA_REQUIRE(params.k >= 0, "hnsw_flat search: k must be >= 0, got {}", params.k);
    const int64_t n = hnsw_->ntotal;
    const int64_t k = std::min<int64_t>(params.k, n);
    if (k == 0) return 0;
    const size_t ef = static_cast<size_t>(std::max<int64_t>(params.ef > 0 ? params.ef : 64, k));
    const faiss::HNSW& h = hnsw_->hnsw;
    const int64_t d = hnsw_->d;
    int64_t ndis = 0;
    auto score = [&](int64_t id) {
      ++ndis;
      return dot_f32(q, xb_ + id * d, d);
    };

    // Greedy descent through the upper layers.
    int64_t cur = h.entry_point;
    float cur_s = score(cur);
    for (int level = h.max_level; level >= 1; --level) {
      for (bool moved = true; moved;) {
        moved = false;
        size_t begin = 0, end = 0;
        h.neighbor_range(cur, level, &begin, &end);
        for (size_t j = begin; j < end && h.neighbors[j] >= 0; ++j) {
          const int64_t v = h.neighbors[j];
          const float s = score(v);
          if (s > cur_s) {
            cur = v;
            cur_s = s;
            moved = true;
          }
        }
      }
    }

    // Best-first beam of width ef on layer 0.
    thread_local std::vector<uint32_t> visited;  // visited[i] == epoch: seen in this search
    thread_local uint32_t epoch = 0;
    if (visited.size() < static_cast<size_t>(n)) visited.assign(static_cast<size_t>(n), 0);
    if (++epoch == 0) {
      std::fill(visited.begin(), visited.end(), 0);
      epoch = 1;
    }
    using Scored = std::pair<float, int64_t>;
    auto worse = [](const Scored& a, const Scored& b) {  // a ranks after b: lower score, then higher id
      return a.first < b.first || (a.first == b.first && a.second > b.second);
    };
    auto better = [&](const Scored& a, const Scored& b) { return worse(b, a); };
    // candidates: best on top; results: worst on top, at most ef.
    std::priority_queue<Scored, std::vector<Scored>, decltype(worse)> candidates(worse);
    std::priority_queue<Scored, std::vector<Scored>, decltype(better)> results(better);
    visited[static_cast<size_t>(cur)] = epoch;
    candidates.push({cur_s, cur});
    results.push({cur_s, cur});
    while (!candidates.empty()) {
      const Scored c = candidates.top();
      if (results.size() >= ef && worse(c, results.top())) break;
      candidates.pop();
      size_t begin = 0, end = 0;
      h.neighbor_range(c.second, 0, &begin, &end);
      for (size_t j = begin; j < end && h.neighbors[j] >= 0; ++j) {
        const int64_t v = h.neighbors[j];
        if (visited[static_cast<size_t>(v)] == epoch) continue;
        visited[static_cast<size_t>(v)] = epoch;
        const Scored sv{score(v), v};
        if (results.size() < ef || worse(results.top(), sv)) {
          candidates.push(sv);
          results.push(sv);
          if (results.size() > ef) results.pop();
        }
      }
    }
    while (static_cast<int64_t>(results.size()) > k) results.pop();
    const int got = static_cast<int>(results.size());
    for (int r = got - 1; r >= 0; --r) {  // results pops worst first
      ids[r] = results.top().second;
      scores[r] = results.top().first;
      results.pop();
    }
    if (stats != nullptr) stats->distance_computations += ndis;
    return got;
  }

 private:
  std::unique_ptr<faiss::IndexHNSWFlat> hnsw_;  // owns its storage
  const float* xb_ = nullptr;  // FAISS's copy of the keys: [ntotal, d]
};

// FAISS's writer and reader over our bytes: what faiss::write_index writes is appended as is.
struct AppendWriter final : faiss::IOWriter {
  explicit AppendWriter(std::vector<std::byte>& out) : out(out) { name = "shard record"; }
  size_t operator()(const void* ptr, size_t size, size_t nitems) override {
    const auto* p = static_cast<const std::byte*>(ptr);
    out.insert(out.end(), p, p + size * nitems);
    return nitems;
  }
  std::vector<std::byte>& out;
};

// As faiss::VectorIOReader, over a span: whole items only, fewer at the end (FAISS then throws).
struct SpanReader final : faiss::IOReader {
  explicit SpanReader(std::span<const std::byte> in) : in(in) { name = "shard record"; }
  size_t operator()(void* ptr, size_t size, size_t nitems) override {
    if (size == 0 || at >= in.size()) return 0;
    const size_t items = std::min(nitems, (in.size() - at) / size);
    if (items > 0) std::memcpy(ptr, in.data() + at, items * size);
    at += items * size;
    return items;
  }
  std::span<const std::byte> in;
  size_t at = 0;
};

// faiss::read_index of bytes, as T; every failure (FAISS's own, a bad_alloc from a size it read, the
// wrong index type, the wrong metric, bytes left over) an ra::Error naming `what`.
template <typename T>
std::unique_ptr<T> read_as(std::span<const std::byte> bytes, const std::string& what, const char* expected) {
  SpanReader reader(bytes);
  std::unique_ptr<faiss::Index> index;
  try {
    index.reset(faiss::read_index(&reader));
  } catch (const std::exception& e) {
    ra::raise("{}: FAISS cannot read the {} bytes saved: {}", what, bytes.size(), e.what());
  }
  RA_REQUIRE(reader.at == bytes.size(), "{}: FAISS read {} of the {} bytes saved", what, reader.at, bytes.size());
  auto* typed = dynamic_cast<T*>(index.get());
  RA_REQUIRE(typed != nullptr, "{}: the saved FAISS index is no {}", what, expected);
  RA_REQUIRE(typed->metric_type == faiss::METRIC_INNER_PRODUCT, "{}: the saved {} is not on inner product", what,
             expected);
  index.release();
  return std::unique_ptr<T>(typed);
}

// The FAISS index behind one of ours, or null.
const faiss::Index* faiss_index_of(const KeyIndex& index) {
  if (const auto* ivf = dynamic_cast<const IvfFlatIndex*>(&index)) return &ivf->faiss_index();
  if (const auto* hnsw = dynamic_cast<const HnswFlatIndex*>(&index)) return &hnsw->faiss_index();
  return nullptr;
}

// The storage of a saved HNSW-Flat index, checked: flat float32 rows on inner product, one per node.
bool hnsw_storage_ok(const faiss::IndexHNSWFlat& h) {
  const auto* flat = dynamic_cast<const faiss::IndexFlat*>(h.storage);
  const bool entry_ok = h.ntotal == 0 || (h.hnsw.entry_point >= 0 && h.hnsw.entry_point < h.ntotal);
  return flat != nullptr && flat->metric_type == faiss::METRIC_INNER_PRODUCT && flat->ntotal == h.ntotal &&
         flat->d == h.d && flat->code_size == static_cast<size_t>(h.d) * sizeof(float) && entry_ok &&
         h.hnsw.levels.size() == static_cast<size_t>(h.ntotal);
}

}  // namespace

void write_faiss_index(const KeyIndex& index, std::vector<std::byte>& out) {
  const faiss::Index* f = faiss_index_of(index);
  RA_REQUIRE(f != nullptr, "write_faiss_index: {} is no FAISS index of ours", index.name());
  AppendWriter writer(out);
  try {
    faiss::write_index(f, &writer);
  } catch (const faiss::FaissException& e) {
    ra::raise("write_faiss_index ({}): FAISS error: {}", index.name(), e.what());
  }
}

std::unique_ptr<KeyIndex> read_ivf_flat_index(std::span<const std::byte> bytes, const std::string& what) {
  std::unique_ptr<faiss::IndexIVFFlat> ivf = read_as<faiss::IndexIVFFlat>(bytes, what, "IVF-Flat index");
  const auto* quantizer = dynamic_cast<const faiss::IndexFlat*>(ivf->quantizer);
  RA_REQUIRE(quantizer != nullptr && quantizer->metric_type == faiss::METRIC_INNER_PRODUCT &&
                 quantizer->ntotal == static_cast<faiss_idx>(ivf->nlist) && ivf->nlist >= 1 &&
                 ivf->nlist <= static_cast<size_t>(INT32_MAX) && ivf->invlists != nullptr,
             "{}: the saved IVF-Flat index has no flat inner-product quantizer of its {} lists", what, ivf->nlist);
  return std::make_unique<IvfFlatIndex>(std::move(ivf));
}

std::unique_ptr<KeyIndex> read_hnsw_flat_index(std::span<const std::byte> bytes, const std::string& what) {
  std::unique_ptr<faiss::IndexHNSWFlat> hnsw = read_as<faiss::IndexHNSWFlat>(bytes, what, "HNSW-Flat index");
  RA_REQUIRE(hnsw_storage_ok(*hnsw),
             "{}: the saved HNSW-Flat index's storage or entry point does not match its {} nodes", what, hnsw->ntotal);
  return std::make_unique<HnswFlatIndex>(std::move(hnsw));
}

std::unique_ptr<KeyIndex> make_ivf_flat_index(const float* keys, int64_t n, int64_t dim, int nlist,
                                              uint64_t seed) {
  check_shape("make_ivf_flat_index", keys, n, dim);
  RA_REQUIRE(nlist > 0 && nlist <= n, "make_ivf_flat_index: nlist must be in [1, n = {}], got {}", n,
             nlist);
  try {
    return std::make_unique<IvfFlatIndex>(keys, n, dim, nlist, seed);
  } catch (const faiss::FaissException& e) {
    ra::raise("make_ivf_flat_index (n {}, dim {}, nlist {}): FAISS error: {}", n, dim, nlist, e.what());
  }
}

std::unique_ptr<KeyIndex> make_hnsw_flat_index(const float* keys, int64_t n, int64_t dim, int M,
                                               int ef_construction) {
  check_shape("make_hnsw_flat_index", keys, n, dim);
  RA_REQUIRE(M > 0, "make_hnsw_flat_index: M must be > 0, got {}", M);
  RA_REQUIRE(ef_construction > 0, "make_hnsw_flat_index: ef_construction must be > 0, got {}",
             ef_construction);
  try {
    return std::make_unique<HnswFlatIndex>(keys, n, dim, M, ef_construction);
  } catch (const faiss::FaissException& e) {
    ra::raise("make_hnsw_flat_index (n {}, dim {}, M {}): FAISS error: {}", n, dim, M, e.what());
  }
}

}  // namespace ra::retriever
