#pragma once
// `ra dump-qkv`: run the decoder (the CPU reference, or the CUDA backend with --backend cuda) over a
// prompt and write every layer's post-RoPE queries, keys and values as .npy files, the input of the
// retrieval benchmark (issue 3). The CUDA backend's q/k/v are its bf16 values, widened.
//
// Output directory layout (keep exactly this: other tools produce it too). T counts BOS.
//   q_l{L}.npy  float32 (n_heads,    T, head_dim)  post-RoPE queries of layer L
//   k_l{L}.npy  float32 (n_kv_heads, T, head_dim)  post-RoPE keys of layer L
//   v_l{L}.npy  float32 (n_kv_heads, T, head_dim)  values of layer L
//   meta.json   {"n_layers", "n_heads", "n_kv_heads", "head_dim", "tokens": T,
//                "scale": score scale (ModelConfig::attn_scale(), 1/sqrt(head_dim)),
//                plus "model", "rope_theta", "prefill_chunk", "format"}
// Query head h attends with kv head h / (n_heads / n_kv_heads); scores are (q · k) · scale (DESIGN §4).
// meta.json is removed first and written last, so its presence marks a complete dump.

#include <CLI/CLI.hpp>

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>

#include "gpu_worker/backend/backend.h"
#include "gpu_worker/model/model.h"

namespace ra {

struct DumpQkvArgs {
  std::string model;         // directory (HF) or .bin (llama2.c); empty = embedded synthetic model
  std::string tokenizer;     // "bytes", a llama2.c tokenizer file, or empty = find beside the model
  std::string prompt_file;   // required with --model; the demo model falls back to its synthetic prompt
  std::string out;           // output directory, created if missing
  int threads = 0;           // 0 = all cores
  std::string backend = "auto";
  int64_t max_tokens = 0;    // > 0: keep only the first max_tokens tokens (BOS included)
  int64_t prefill_chunk = 256;
  int64_t synthetic_prompt_bytes = 8192;
};

struct DumpQkvOptions {
  int64_t prefill_chunk = 256;  // tokens per prefill step; the dump does not depend on it (up to rounding)
  int threads = 0;              // 0 = all cores
  BackendKind backend = BackendKind::kCpu;
};

struct DumpQkvStats {
  int64_t tokens = 0;   // T, BOS included
  int64_t layers = 0;
  double seconds = 0;   // prefill + writing
};

// Registers the subcommand and its options on `app`; the callback runs it.
void add_dump_qkv_command(CLI::App& app);

// Runs the command: loads the model and tokenizer, builds BOS + encoded prompt, dumps, and prints a
// one-line summary to stderr. Returns the exit code; throws ra::Error on bad input.
int run_dump_qkv(const DumpQkvArgs& args);

// The library entry point: runs `tokens` (BOS included) through options.backend with
// max_positions = tokens.size() and streams every layer's q/k/v into `out_dir` in the layout above.
// Memory is O(T) for the KV cache plus O(prefill_chunk · T) for one chunk's scores; the dumped arrays
// are written to disk as they are produced, never held whole. Throws ra::Error when the tokens are empty,
// do not fit in max_position_embeddings, or a file cannot be written.
DumpQkvStats dump_qkv(const Model& model, std::span<const int32_t> tokens, const std::filesystem::path& out_dir,
                      const DumpQkvOptions& options);

}  // namespace ra
