#pragma once
// FAISS baselines behind KeyIndex (DESIGN §5, modes `ivf` and `hnsw`), both on inner product.
//
// Layout (as in key_index.h): keys are n rows of dim float32, component j of key i is keys[i * dim + j].
// FAISS copies the keys into its own storage, so the caller need not keep them alive; memory_bytes()
// includes that copy. Knobs travel per call (SearchParams.nprobe / .ef), never as index state, and
// search() is single-threaded (FAISS's OpenMP limited to the calling thread; callers parallelise over
// queries).
// FAISS errors come back as ra::Error with context.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "cpu_retriever/key_index.h"

namespace ra::retriever {

// faiss::IndexIVFFlat with an IndexFlatIP quantizer of nlist centroids, trained by k-means on the
// keys themselves with `seed` (deterministic for a given seed and key matrix).
// Search: nprobe = params.nprobe clamped to [1, nlist]; 0 means max(1, nlist / 16).
// distance_computations = nlist (quantizer) + the sizes of the probed lists, counted per call
// (exact under concurrency).
std::unique_ptr<KeyIndex> make_ivf_flat_index(const float* keys, int64_t n, int64_t dim, int nlist,
                                              uint64_t seed);

// faiss::IndexHNSWFlat(dim, M, METRIC_INNER_PRODUCT) with efConstruction = ef_construction, built by
// FAISS (on OpenMP's default threads; insertion order under threads makes the graph vary between
// builds). Search walks FAISS's graph with the standard HNSW algorithm implemented here, because
// FAISS 1.7.3's own search ignores SearchParametersHNSW::efSearch when sizing its beam (see the .cpp):
// efSearch = max(params.ef, k); 0 means max(64, k). distance_computations counts every q · k of that
// call, upper layers included; exact under concurrency.
std::unique_ptr<KeyIndex> make_hnsw_flat_index(const float* keys, int64_t n, int64_t dim, int M,
                                               int ef_construction);

// Saving (issue 18): appends index's FAISS index to out exactly as faiss::write_index writes it. index:
// one that make_ivf_flat_index, make_hnsw_flat_index or a read below made; any other is an ra::Error.
void write_faiss_index(const KeyIndex& index, std::vector<std::byte>& out);
// The index of bytes write_faiss_index wrote (all of them), searched as the one saved: the same
// answers and counters, bit for bit. what: names them in errors. Throws ra::Error when FAISS cannot
// read them or they hold another kind of index (type, metric, quantizer or storage).
std::unique_ptr<KeyIndex> read_ivf_flat_index(std::span<const std::byte> bytes, const std::string& what);
std::unique_ptr<KeyIndex> read_hnsw_flat_index(std::span<const std::byte> bytes, const std::string& what);

}  // namespace ra::retriever
