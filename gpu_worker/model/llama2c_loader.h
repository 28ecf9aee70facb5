#pragma once
// Loads a checkpoint in llama2.c's legacy .bin format: a header of seven int32 values
//   dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size (negative: separate classifier), seq_len
// followed by float32 tensors in llama2.c's order. RoPE in llama2.c rotates interleaved pairs
// (2i, 2i+1); the loader permutes the rows of wq and wk within each head so the model runs with the
// Hugging Face rotate-half convention that the rest of the project uses. Scores q·k are unchanged.

#include <filesystem>

#include "gpu_worker/model/model.h"

namespace ra {

// Throws ra::Error naming the file and the field on a bad header or a size mismatch.
Model load_llama2c_model(const std::filesystem::path& file);

// Reorders the rows of a [n_heads * head_dim][cols] projection from interleaved-pair RoPE order to
// rotate-half order: new row j < head_dim/2 is old row 2j, new row head_dim/2 + j is old row 2j + 1.
std::vector<float> interleaved_to_half_rotation(const std::vector<float>& w, int64_t n_heads,
                                                int64_t head_dim, int64_t cols);

}  // namespace ra
