#include "gpu_worker/model/model_loader.h"

#include "common/error.h"
#include "gpu_worker/model/hf_loader.h"
#include "gpu_worker/model/llama2c_loader.h"

namespace ra {

Model load_model(const std::filesystem::path& path) {
  RA_REQUIRE(std::filesystem::exists(path), "--model {}: no such file or directory", path.string());
  if (std::filesystem::is_directory(path)) return load_hf_model(path);
  if (path.filename() == "config.json") return load_hf_model(path.parent_path());
  if (path.extension() == ".bin") return load_llama2c_model(path);
  raise("--model {}: expected a Hugging Face checkpoint directory (config.json + safetensors) or a "
        "llama2.c .bin file",
        path.string());
}

}  // namespace ra
