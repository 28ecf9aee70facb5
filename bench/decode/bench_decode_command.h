#pragma once
// `ra bench decode` (issue 14): decode speed at given context lengths, one row per (context, mode).
//
//   ra bench decode --geometry llama3-8b --context 0,32768,131072,524288 --modes full --json F
//
// Weights are random and made on the GPU for --geometry (timing does not depend on values); --model
// loads a checkpoint instead. Per row:
//   - decode: --warmup steps, then --steps steps, each timed on the device (CUDA backend: the decode
//     step's CUDA graph replayed back to back, the sampled token fed back on the GPU, as the PyTorch
//     reference scripts/bench_torch_decode.py does) or on the host (CPU backend); p50, p99 and mean ms;
//   - the KV cache holds random keys and values for `context` positions, unless the prefill was
//     measured (contexts <= --prefill-max), in which case it holds the prefilled prompt;
//   - prefill: seconds, tokens/s, TFLOP/s and MFU against the card's measured bf16 GEMM rate;
//   - memory: peak GPU bytes the backend allocated, peak host RSS;
//   - the bandwidth floor: (weights read per token + KV of the context) / measured copy bandwidth.
// A row that does not fit the GPU is reported as skipped with the reason.

#include <CLI/CLI.hpp>

namespace ra {

// Registers `decode` under `bench` (the subcommand made by add_bench_command).
void add_bench_decode_command(CLI::App& bench);

}  // namespace ra
