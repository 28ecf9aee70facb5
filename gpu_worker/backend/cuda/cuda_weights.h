#pragma once
// A Llama model's weights in GPU memory, laid out for the CUDA backend's kernels:
//   - the q, k and v projections fused into one matrix, so the decode step reads them in one GEMV and
//     the prefill runs one GEMM;
//   - gate and up interleaved row by row (row 2i = gate_i, row 2i + 1 = up_i), so one GEMV produces
//     silu(gate) * up directly (GemvEpilogue::kSwiGlu) and the prefill's SwiGLU reads adjacent columns;
//   - norms in float32, every matrix in T (bf16 for 16-bit checkpoints, float32 for F32 ones).

#include <cuda_runtime.h>

#include <cstdint>
#include <vector>

#include "gpu_worker/backend/cuda/device_memory.h"
#include "gpu_worker/model/model.h"

namespace ra::cuda {

template <typename T>
struct DeviceLayerWeights {
  DeviceBuffer<float> attn_norm;  // [hidden]
  DeviceBuffer<T> wqkv;           // [(n_heads + 2 n_kv_heads) * head_dim][hidden]: q rows, k rows, v rows
  DeviceBuffer<T> wo;             // [hidden][n_heads * head_dim]
  DeviceBuffer<float> ffn_norm;   // [hidden]
  DeviceBuffer<T> wgu;            // [2 * intermediate][hidden], gate and up rows interleaved
  DeviceBuffer<T> wdown;          // [hidden][intermediate]
};

template <typename T>
struct DeviceWeights {
  DeviceBuffer<T> embed;  // [vocab][hidden]
  std::vector<DeviceLayerWeights<T>> layers;
  DeviceBuffer<float> final_norm;  // [hidden]
  DeviceBuffer<T> lm_head;         // [vocab][hidden]; empty when tied to embed

  const T* output_matrix() const { return lm_head.size() ? lm_head.get() : embed.get(); }
  int64_t bytes() const;  // device bytes of all weights
};

// Converts the host model's float32 weights to T on the GPU (synchronises `stream` before returning).
template <typename T>
DeviceWeights<T> upload_weights(const Model& model, cudaStream_t stream);

// Random weights of the given geometry made on the GPU (deterministic in seed; norms 1): timing runs
// need no checkpoint. Synchronises `stream` before returning.
template <typename T>
DeviceWeights<T> random_weights(const ModelConfig& config, uint64_t seed, cudaStream_t stream);

}  // namespace ra::cuda
