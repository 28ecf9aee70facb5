#pragma once
// Storage types of the CUDA backend and their conversions to float32, usable in device code.
// Weights and KV are stored as T ∈ {float, bfloat16} (the checkpoint's dtype: F32 checkpoints stay
// float32, every 16-bit checkpoint runs in bf16); every accumulation is float32.

#include <cuda_bf16.h>
#include <cuda_runtime.h>

namespace ra::cuda {

using bfloat16 = __nv_bfloat16;

enum class DType { kF32, kBF16 };

template <typename T>
constexpr DType dtype_of();
template <>
constexpr DType dtype_of<float>() { return DType::kF32; }
template <>
constexpr DType dtype_of<bfloat16>() { return DType::kBF16; }

inline size_t dtype_size(DType t) { return t == DType::kF32 ? 4 : 2; }
inline const char* dtype_name(DType t) { return t == DType::kF32 ? "f32" : "bf16"; }

__host__ __device__ __forceinline__ float to_float(float x) { return x; }
__host__ __device__ __forceinline__ float to_float(bfloat16 x) { return __bfloat162float(x); }

template <typename T>
__host__ __device__ __forceinline__ T from_float(float x);
template <>
__host__ __device__ __forceinline__ float from_float<float>(float x) { return x; }
template <>
__host__ __device__ __forceinline__ bfloat16 from_float<bfloat16>(float x) { return __float2bfloat16_rn(x); }

}  // namespace ra::cuda
