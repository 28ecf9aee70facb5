#pragma once
// The CUDA backend (DESIGN §2: the GPU worker's compute): the Llama forward pass on one GPU, behind the
// Backend interface of gpu_worker/backend/backend.h.
//
//   weights and KV: bf16 for 16-bit checkpoints, float32 for F32 ones; float32 accumulation everywhere
//   prefill: layer by layer over the whole prompt (cuBLASLt GEMMs per chunk of tokens, flash attention
//            on the tensor cores), so the offloaded modes hold one layer's prompt K/V at a time
//   decode:  fused GEMVs, split-K decode attention returning (o, lse), GPU sampling; the whole step is
//            one CUDA graph replayed per token (modes full and window); with a remote part, the step
//            runs layer by layer around the retrievers' round trips and merges their partials on the GPU
// The QkvObserver sees every prefill chunk's q/k/v (decode steps are not observed).

#include <memory>
#include <string>

#include "gpu_worker/backend/backend.h"

namespace ra {

// True when a CUDA device is visible; otherwise cuda_device_problem() says why.
bool cuda_device_visible();
std::string cuda_device_problem();
// The current device's PCI bus id ("0000:18:00.0"), or "" when there is none.
std::string cuda_pci_bus_id();

// `model` must outlive the call only (its weights are copied to the GPU).
std::unique_ptr<Backend> make_cuda_backend(const Model& model, const BackendOptions& options);

// Random bf16 weights of `config`'s geometry made on the GPU (no checkpoint, no host copy): timing
// runs at a real model's shape (`ra bench decode --geometry llama3-8b`).
std::unique_ptr<Backend> make_cuda_backend_random(const ModelConfig& config, uint64_t seed,
                                                  const BackendOptions& options);

}  // namespace ra
