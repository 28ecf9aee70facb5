#pragma once
// Opens whatever the user points --model at: a Hugging Face checkpoint directory or a llama2.c .bin.

#include <filesystem>

#include "gpu_worker/model/model.h"

namespace ra {

// Throws ra::Error naming the path when it is neither format.
Model load_model(const std::filesystem::path& path);

}  // namespace ra
