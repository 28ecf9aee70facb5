#pragma once
// Matrix-vector products of the decode step (batch 1): the weights are read once, so these kernels are
// bound by memory bandwidth, and they fuse the small work around each product so that a decode step
// is a handful of launches per layer.
//
//   W: [rows][cols] T, row-major (the Hugging Face [out_features][in_features] layout), device
//   x: [cols] float32, device
//   norm_w: [cols] float32 or nullptr. When given, the product uses the RMS-normalised input
//           xn[c] = norm_w[c] * (x[c] * inv), inv = 1 / sqrt(Σ x² / cols + eps)   (the model's RMSNorm,
//           fused; the same expression as ra::cpu::rms_norm, computed once per block)
//   acc[r] = Σ_c W[r][c] * xn[c], accumulated in float32
// Epilogues:
//   kStore:  y[r] = acc[r]                                   y: [rows] float32
//   kAddInto: y[r] += acc[r]  (the residual stream)           y: [rows] float32
//   kSwiGlu: rows is even and rows 2i, 2i+1 are gate_i, up_i: y[i] = silu(acc[2i]) * acc[2i+1],
//            y: [rows / 2] float32
// x and y never alias. No allocation, no synchronisation: safe to capture in a CUDA graph.
// x is staged in shared memory as float32, so cols is at most the device's opt-in shared memory / 4
// (about 58K on H100/H200). cudaErrorInvalidValue, with nothing launched, for cols <= 0, rows < 0, an
// odd rows with kSwiGlu, or a cols that does not fit; rows == 0 does nothing. Any alignment of W works
// (16-byte loads when rows start 16-byte aligned, element loads otherwise).
// Launched with programmatic dependent launch: the kernel may start while the preceding kernel of the
// stream finishes (it only prefetches W into L2 then) and reads x, norm_w, y and W after that kernel
// has completed; it also lets the next kernel start early (which must wait likewise if it opts in).
// RA_CUDA_NO_PDL in the environment makes these plain launches (a diagnostic switch).

#include <cuda_runtime.h>

#include "gpu_worker/backend/cuda/dtype.cuh"

namespace ra::cuda {

enum class GemvEpilogue { kStore, kAddInto, kSwiGlu };

template <typename T>
cudaError_t gemv(const T* W, const float* x, const float* norm_w, float eps, float* y, int rows, int cols,
                 GemvEpilogue epilogue, cudaStream_t stream);

}  // namespace ra::cuda
