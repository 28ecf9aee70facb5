#pragma once
// Picks the next token on the GPU, so a decode step needs no logits on the host. The same function as
// the CPU Sampler (gpu_worker/decode/sampler.h, which spells out the arithmetic), bit for bit:
//   temperature == 0: argmax, the lowest index on ties (NaN logits are never chosen).
//   otherwise: w_i = exp((l_i − max l) / temperature) (float32 quotient, exp in double, rounded to float),
//   held as the integer q_i = floor(w_i · 2^40) so every sum is exact whatever its order. With top_p < 1
//   keep the tokens whose logit is >= λ, the largest logit whose kept mass Σ_{l_j >= λ} q_j reaches
//   ceil(top_p · Σ q_j) (ties at λ all kept; λ is found by a 3-level radix select on the logit's bits);
//   r = floor(kept mass · u), u = sample_uniform(seed, step) (24 bits); the token is the first kept index,
//   in ascending order, whose running kept mass exceeds r (r < kept mass, so one always does).
//   The device cannot throw: temperature <= 0 or NaN is greedy, top_p >= 1 or NaN keeps every token,
//   top_p <= 0 keeps only the top logit and its ties; no logit above −inf gives the greedy answer.
//
//   logits: [vocab] float32 (device), 1 <= vocab < 2^23; params: one SamplingParams (device,
//   common/sample_uniform.h); step: device counter, read then incremented (greedy calls too);
//   out: the token (device int32). One block of 1024 threads; cudaErrorInvalidValue for a bad vocab or
//   a null pointer (nothing is launched then).
// Graph-safe: parameters and the counter live in device memory.

#include <cuda_runtime.h>

#include <cstdint>

#include "common/sample_uniform.h"

namespace ra::cuda {

cudaError_t sample_token(const float* logits, int vocab, const SamplingParams* params, uint64_t* step,
                         int32_t* out, cudaStream_t stream);

}  // namespace ra::cuda
