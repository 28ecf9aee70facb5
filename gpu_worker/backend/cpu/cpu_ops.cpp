#include "gpu_worker/backend/cpu/cpu_ops.h"

#include <cblas.h>

#include <cmath>

namespace ra::cpu {

void linear(const float* x, const float* w, float* y, int64_t n, int64_t in, int64_t out) {
  if (n == 1) {
    cblas_sgemv(CblasRowMajor, CblasNoTrans, static_cast<int>(out), static_cast<int>(in), 1.0f, w,
                static_cast<int>(in), x, 1, 0.0f, y, 1);
    return;
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(n), static_cast<int>(out),
              static_cast<int>(in), 1.0f, x, static_cast<int>(in), w, static_cast<int>(in), 0.0f, y,
              static_cast<int>(out));
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
