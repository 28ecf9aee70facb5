#include "gpu_worker/backend/cpu/cpu_ops.h"

#include <cblas.h>

#include <omp.h>

#include <algorithm>
#include <cmath>

namespace ra::cpu {

void single_threaded_blas() { openblas_set_num_threads(1); }

void linear(const float* x, const float* w, float* y, int64_t n, int64_t in, int64_t out) {
  // Each OpenMP thread computes a contiguous block of output features with a single-threaded BLAS
  // call: one threading runtime, so no OpenBLAS and OpenMP workers spin against each other.
  const int64_t threads = std::max(1, omp_get_max_threads());
  const int64_t block = std::max<int64_t>(16, (out + threads - 1) / threads + 15) / 16 * 16;
  const int64_t blocks = (out + block - 1) / block;
#pragma omp parallel for schedule(static) if (blocks > 1 && n * in * out > (1 << 16))
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t begin = b * block;
    const int rows = static_cast<int>(std::min(block, out - begin));
    if (n == 1) {
      cblas_sgemv(CblasRowMajor, CblasNoTrans, rows, static_cast<int>(in), 1.0f, w + begin * in,
                  static_cast<int>(in), x, 1, 0.0f, y + begin, 1);
    } else {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(n), rows, static_cast<int>(in), 1.0f,
                  x, static_cast<int>(in), w + begin * in, static_cast<int>(in), 0.0f, y + begin,
                  static_cast<int>(out));
    }
  }
}

void rms_norm(const float* x, const float* weight, float* y, int64_t n, int64_t dim, float eps) {
#pragma omp parallel for if (n > 16)
  for (int64_t i = 0; i < n; ++i) {
    const float* xi = x + i * dim;
    float* yi = y + i * dim;
    float ss = 0.0f;
    for (int64_t d = 0; d < dim; ++d) ss += xi[d] * xi[d];
    const float inv = 1.0f / std::sqrt(ss / static_cast<float>(dim) + eps);
    for (int64_t d = 0; d < dim; ++d) yi[d] = weight[d] * (xi[d] * inv);
  }
}

void silu_mul(float* gate, const float* up, int64_t n) {
#pragma omp parallel for if (n > 4096)
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    gate[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

}  // namespace ra::cpu
