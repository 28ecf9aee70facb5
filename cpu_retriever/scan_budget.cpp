#include "cpu_retriever/scan_budget.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "common/error.h"

namespace ra::retriever {

ScanBudget fit_scan_budget(const KeyIndex& index, ScanKnob knob, const float* queries, int64_t n_queries, int k,
                           double fraction, int64_t max_queries) {
  RA_REQUIRE(fraction > 0.0 && fraction <= 1.0, "scan budget: fraction {} is outside (0, 1]", fraction);
  RA_REQUIRE(queries != nullptr && n_queries > 0 && max_queries > 0, "scan budget: needs queries ({} given)",
             n_queries);
  RA_REQUIRE(k >= 1, "scan budget: top-k {} < 1", k);
  const int64_t n = index.size();
  ScanBudget out;
  if (n == 0) return out;
  const int64_t used = std::min(n_queries, max_queries);
  const float* first = queries + (n_queries - used) * index.dim();
  std::vector<int64_t> ids(static_cast<size_t>(k));
  std::vector<float> scores(static_cast<size_t>(k));

  // Mean keys scored per search at knob x.
  auto scanned = [&](int x) {
    SearchParams p;
    p.k = k;
    (knob == ScanKnob::kEf ? p.ef : p.nprobe) = x;
    SearchStats stats;
    for (int64_t i = 0; i < used; ++i) index.search(first + i * index.dim(), p, ids.data(), scores.data(), &stats);
    ++out.evaluations;
    return static_cast<double>(stats.distance_computations) / static_cast<double>(used);
  };
  const double target = fraction * static_cast<double>(n);
  // A beam or a probe count beyond the keys scores nothing more.
  const int top = static_cast<int>(std::min<int64_t>(n, int64_t{1} << 30));
  int lo = 0, hi = 1;  // scanned(lo) < target <= scanned(hi), once found
  double at_lo = 0.0, at_hi = scanned(hi);
  while (at_hi < target && hi < top) {
    lo = hi, at_lo = at_hi;
    hi = static_cast<int>(std::min<int64_t>(int64_t{2} * hi, top));
    at_hi = scanned(hi);
  }
  while (hi - lo > 1) {
    const int mid = lo + (hi - lo) / 2;
    const double at_mid = scanned(mid);
    (at_mid >= target ? hi : lo) = mid;
    (at_mid >= target ? at_hi : at_lo) = at_mid;
  }
  const bool take_lo = lo >= 1 && at_hi >= target && target - at_lo < at_hi - target;
  const int chosen = take_lo ? lo : hi;
  (knob == ScanKnob::kEf ? out.ef : out.nprobe) = chosen;
  out.scanned_fraction = (take_lo ? at_lo : at_hi) / static_cast<double>(n);
  return out;
}

}  // namespace ra::retriever
