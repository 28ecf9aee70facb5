#pragma once
// What every `ra` command that runs a model does first: load what --model and --tokenizer name (the
// embedded demo model when --model is empty), read the prompt, and turn it into token ids.

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "gpu_worker/decode/generator.h"
#include "gpu_worker/model/model.h"
#include "gpu_worker/model/tokenizer.h"
#include "launcher/config/run_config.h"
#include "launcher/plan/run_plan.h"

namespace ra {

// The seed of the demo model's synthetic prompt, shared by every command so their prompts agree.
inline constexpr uint64_t kSyntheticPromptSeed = 7;

struct LoadedModel {
  Model model;
  std::unique_ptr<Tokenizer> tokenizer;
  bool synthetic = false;  // the embedded demo model (no --model)
};

// Throws ra::Error naming the path or field on any problem (see load_model, resolve_tokenizer).
LoadedModel load_model_and_tokenizer(const std::string& model_arg, const std::string& tokenizer_arg);

// The model a run config names: `geometry` with no `model` gives the demo model at that geometry
// (random weights, byte vocabulary); otherwise as load_model_and_tokenizer.
LoadedModel load_model_for(const RunConfig& config);

// The prompt text a run config names: prompt_file, else prompt, else the demo model's synthetic
// prompt of synthetic_prompt_bytes (empty for real models).
std::string prompt_text_for(const RunConfig& config, const LoadedModel& loaded);

// The geometry the plan needs. Synthetic models need no weights for it; a checkpoint is loaded.
// gpu_random: the worker makes random bf16 weights on the GPU (random_weights_on_gpu; `ra generate`).
Geometry geometry_for(const RunConfig& config, bool gpu_random = false);
// Whether `ra generate`'s worker makes the config's random weights on the GPU: a `geometry` without a
// checkpoint, on the CUDA backend (`ra serve` loads them on the host instead).
bool random_weights_on_gpu(const RunConfig& config);

// Whether the worker computes on a GPU: the config's backend as this machine resolves it (auto: cuda
// when a GPU is visible). The launcher plans the ranks' waits by it (shm_spin_budgets_for).
bool worker_on_gpu(const RunConfig& config);

// The raw bytes of a prompt file; throws ra::Error naming it when it cannot be read.
std::string read_prompt_file(const std::string& path);

// BOS (when the tokenizer's files, or else the model config, name one and do not turn it off)
// followed by tokenizer.encode(text).
std::vector<int32_t> encode_prompt(const LoadedModel& loaded, std::string_view text);

// encode_prompt, and throws ra::Error when the result exceeds max_position_embeddings, naming both numbers.
std::vector<int32_t> prompt_tokens(const LoadedModel& loaded, std::string_view text);

// The sampling a run config names (max_new_tokens, temperature, top_p, seed), with the RA_LOGITS_TRACE
// callback when set (run_report.h). The worker rank adds its after_prefill.
GenerateOptions generate_options_for(const RunConfig& config);

// Where generated text goes: stdout and only there, flushed per piece so it streams.
void write_generated_text(std::string_view piece);

}  // namespace ra
