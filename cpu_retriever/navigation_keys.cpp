#include "cpu_retriever/navigation_keys.h"

#include <omp.h>

#include <algorithm>
#include <cmath>

#include "common/error.h"

namespace ra::retriever {

NavigationKeys::NavigationKeys(const KeyRows& exact, int64_t n, int64_t max_rows, int threads)
    : dim_(exact.dim), max_rows_(max_rows) {
  RA_REQUIRE(dim_ > 0 && n >= 0 && max_rows >= n && max_rows > 0,
             "navigation keys: bad sizes (dim {}, n {}, max_rows {})", dim_, n, max_rows);
  widened_.resize(static_cast<size_t>(dim_));
  // peak[d]: the largest |key[d]|, or the largest norm of d's RoPE pair (d, d + dim/2) when dim is even,
  // found per thread (a max does not depend on the order) from squares in double, then one sqrt.
  const int team = std::max(1, threads);
  const int64_t half = dim_ % 2 == 0 ? dim_ / 2 : 0;
  std::vector<std::vector<double>> part_peak(static_cast<size_t>(team), std::vector<double>(static_cast<size_t>(dim_)));
#pragma omp parallel num_threads(team) if (team > 1 && n > 4096)
  {
    std::vector<float> w(static_cast<size_t>(dim_));
    std::vector<double>& peak = part_peak[static_cast<size_t>(omp_get_thread_num())];
#pragma omp for schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      exact.widen(static_cast<uint32_t>(i), w.data());
      if (half == 0) {
        for (int64_t d = 0; d < dim_; ++d) {
          const double a = std::fabs(w[d]);
          if (std::isfinite(a)) peak[d] = std::max(peak[d], a);
        }
        continue;
      }
      for (int64_t d = 0; d < half; ++d) {
        const double x = std::isfinite(w[d]) ? w[d] : 0.0, y = std::isfinite(w[d + half]) ? w[d + half] : 0.0;
        peak[d] = std::max(peak[d], x * x + y * y);
      }
    }
  }
  std::vector<float> peak(static_cast<size_t>(dim_), 0.0f);
  for (int64_t d = 0; d < (half == 0 ? dim_ : half); ++d) {
    double m = 0;
    for (const auto& part : part_peak) m = std::max(m, part[d]);
    peak[d] = static_cast<float>(half == 0 ? m : std::sqrt(m));
  }
  for (int64_t d = 0; d < half; ++d) peak[d + half] = peak[d];
  scale_.resize(static_cast<size_t>(dim_));
  inv_scale_.resize(static_cast<size_t>(dim_));
  for (int64_t d = 0; d < dim_; ++d) {
    // A channel that is zero (or subnormal-small) everywhere codes as zeros whatever its scale.
    scale_[d] = peak[d] > 1e-30f ? peak[d] / 127.0f : 1.0f;
    inv_scale_[d] = 1.0f / scale_[d];
  }
  reserve_space();
  committed_ = space_.grow(committed_, static_cast<size_t>(n) * static_cast<size_t>(dim_));
#pragma omp parallel num_threads(team) if (team > 1 && n > 4096)
  {
    std::vector<float> w(static_cast<size_t>(dim_));
#pragma omp for schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      exact.widen(static_cast<uint32_t>(i), w.data());
      code(w.data(), base_ + static_cast<size_t>(i) * static_cast<size_t>(dim_));
    }
  }
  size_ = n;
}

NavigationKeys::NavigationKeys(std::span<const float> scales, std::span<const int8_t> codes, int64_t max_rows)
    : dim_(static_cast<int64_t>(scales.size())), max_rows_(max_rows) {
  RA_REQUIRE(dim_ > 0 && codes.size() % scales.size() == 0, "navigation keys: {} codes for {} channels",
             codes.size(), scales.size());
  const auto n = static_cast<int64_t>(codes.size()) / dim_;
  RA_REQUIRE(max_rows >= n && max_rows > 0, "navigation keys: {} saved rows, max_rows {}", n, max_rows);
  for (size_t d = 0; d < scales.size(); ++d) {
    RA_REQUIRE(std::isfinite(scales[d]) && scales[d] > 0.0f, "navigation keys: channel {}'s scale is {}", d,
               scales[d]);
  }
  widened_.resize(static_cast<size_t>(dim_));
  scale_.assign(scales.begin(), scales.end());
  inv_scale_.resize(static_cast<size_t>(dim_));
  for (int64_t d = 0; d < dim_; ++d) inv_scale_[d] = 1.0f / scale_[d];  // as the build computes it
  reserve_space();
  committed_ = space_.grow(committed_, codes.size());
  std::copy(codes.begin(), codes.end(), base_);
  size_ = n;
}

void NavigationKeys::reserve_space() {
  space_ = AddressReservation(static_cast<size_t>(max_rows_) * static_cast<size_t>(dim_), /*usable=*/false,
                              "navigation keys");
  base_ = reinterpret_cast<int8_t*>(space_.data());
}

void NavigationKeys::code(const float* key, int8_t* out) const {
  for (int64_t d = 0; d < dim_; ++d) {
    // Clamped, then rounded half to even by adding and taking away 1.5 * 2^23 (exact for |x| <= 2^22;
    // no libm call per element; IEEE arithmetic, never folded without -ffast-math, which no build uses):
    // the same code as nearbyint then clamp, since rounding is monotonic and +-127 are integers. NaN
    // codes as 0.
    const float x = key[d] * inv_scale_[d];
    const float rounded = (std::clamp(x, -127.0f, 127.0f) + 12582912.0f) - 12582912.0f;
    out[d] = std::isnan(x) ? int8_t{0} : static_cast<int8_t>(rounded);
  }
}

void NavigationKeys::append(const KeyRows& exact, uint32_t id) {
  RA_REQUIRE(static_cast<int64_t>(id) == size_, "navigation keys: key {} appended as row {}", id, size_);
  RA_REQUIRE(size_ < max_rows_, "navigation keys: full at {} rows (its max_rows)", max_rows_);
  committed_ = space_.grow(committed_, static_cast<size_t>(size_ + 1) * static_cast<size_t>(dim_));
  exact.widen(id, widened_.data());
  code(widened_.data(), base_ + static_cast<size_t>(size_) * static_cast<size_t>(dim_));
  ++size_;
}

void NavigationKeys::scale_query(const float* q, float* out) const {
  for (int64_t d = 0; d < dim_; ++d) out[d] = q[d] * scale_[d];
}

}  // namespace ra::retriever
