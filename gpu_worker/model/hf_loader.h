#pragma once
// Loads a Hugging Face LlamaForCausalLM checkpoint directory: config.json plus safetensors weights
// (one file, or shards listed in model.safetensors.index.json), in bf16, f16 or f32.

#include <filesystem>

#include "gpu_worker/model/model.h"

namespace ra {

// Throws ra::Error naming the file and the tensor or field on any problem.
Model load_hf_model(const std::filesystem::path& dir);

}  // namespace ra
