#pragma once
// The embedded default: a small deterministic Llama made in memory from a seed, with a byte-level
// vocabulary, and a long synthetic prompt for it. Used by `ra generate` with no --model, so a fresh
// checkout runs the whole path with nothing downloaded.

#include <cstdint>
#include <string>

#include "gpu_worker/model/model.h"

namespace ra {

struct SyntheticModelSpec {
  int64_t hidden_size = 256;
  int64_t n_layers = 4;
  int64_t n_heads = 8;
  int64_t n_kv_heads = 2;
  int64_t head_dim = 32;
  int64_t intermediate_size = 768;
  int64_t max_position_embeddings = 32768;
  uint64_t seed = 1234;  // weight seed

  bool operator==(const SyntheticModelSpec&) const = default;
};

// Weights are N(0, 1/sqrt(fan_in)) from a fixed generator; norms are 1. The output rows of
// non-printable bytes and special tokens are zero so the demo prints readable text and never stops
// early. Vocabulary: 258 (bytes, BOS = 256, EOS = 257).
Model make_synthetic_model(const SyntheticModelSpec& spec);
// Its configuration alone (no weights), e.g. for a backend that makes random weights of its own.
ModelConfig synthetic_model_config(const SyntheticModelSpec& spec);

// `bytes` bytes of deterministic English-like filler with four "magic number" facts, ending with a
// question about the first (exactly `bytes` long when `bytes` exceeds the question, else the question).
std::string make_synthetic_prompt(int64_t bytes, uint64_t seed);

}  // namespace ra
