#pragma once
// Dense float32 building blocks of the CPU reference backend. Row-major throughout.

#include <cstdint>

namespace ra::cpu {

// Makes OpenBLAS single-threaded for the whole process: the CPU backend parallelises with OpenMP
// around its BLAS calls instead.
void single_threaded_blas();

// y[n][out] = x[n][in] · w[out][in]^T  (w in the Hugging Face [out_features][in_features] layout)
void linear(const float* x, const float* w, float* y, int64_t n, int64_t in, int64_t out);

// y[i] = x[i] / rms(x[i]) * weight, for n rows of `dim` values. y may alias x.
void rms_norm(const float* x, const float* weight, float* y, int64_t n, int64_t dim, float eps);

// gate[i] = silu(gate[i]) * up[i], for n values.
void silu_mul(float* gate, const float* up, int64_t n);

}  // namespace ra::cpu
