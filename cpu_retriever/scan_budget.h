#pragma once
// Search knobs from a budget of keys scanned (issue 17): instead of a fixed beam or probe count, each
// index is given the knob whose searches score a target fraction of its keys, measured on queries of
// its own head (the prefill's), so that modes compare at the same cost and the cost scales with the
// context. The knob is the beam (ef) of a graph or HNSW index, the lists probed (nprobe) of an IVF index;
// a flat index has none (it scans every key).
//
// The search: ef / nprobe doubles from a small start until the mean count of scored keys
// (SearchStats::distance_computations, what every report calls keys scanned) reaches the target, then a
// bisection between the last two finds the smallest knob that reaches it; of that knob and the one
// below, the one whose count is nearer the target wins. The counts grow with the knob (a wider beam or
// more lists scores more keys), which is all the search assumes.

#include <cstdint>

#include "cpu_retriever/key_index.h"

namespace ra::retriever {

enum class ScanKnob { kEf, kNprobe };

struct ScanBudget {
  int ef = 0;                      // for the SearchParams of this index's searches (0: not tuned)
  int nprobe = 0;
  double scanned_fraction = 0.0;   // measured at the chosen knob: mean keys scored / index size
  int evaluations = 0;             // knob values tried
};

// The knob of `index` whose searches for top-k score `fraction` of its keys on average over `queries`:
// [n_queries][dim] float32 (at most max_queries of them are used, the last ones: a prefill's latest
// positions are the nearest to its decode steps). Throws ra::Error when fraction is outside (0, 1],
// there are no queries or k < 1.
ScanBudget fit_scan_budget(const KeyIndex& index, ScanKnob knob, const float* queries, int64_t n_queries, int k,
                           double fraction, int64_t max_queries = 32);

}  // namespace ra::retriever
