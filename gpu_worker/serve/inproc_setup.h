#pragma once
// Loads a model for serving in this process: the weights, a Backend on them, an InprocEngine, the
// tokenizer and the chat template (what ra-serve-inproc runs; `ra serve` in full and window modes).

#include <cstdint>
#include <memory>
#include <string>

#include "gpu_worker/backend/backend.h"
#include "gpu_worker/model/tokenizer.h"
#include "gpu_worker/serve/inproc_engine.h"
#include "gpu_worker/serve/served_model.h"

namespace ra::serve {

struct InprocModelOptions {
  std::string model;      // Hugging Face directory or llama2.c .bin; empty: the embedded demo model
  std::string tokenizer;  // as `ra generate --tokenizer`: "" (found beside the model), "bytes", or a file
  std::string name;       // the served model id; empty: the model's folder (file) name, "demo" for the demo
  BackendKind backend = BackendKind::kAuto;
  int threads = 0;             // 0: every core
  int64_t max_positions = 0;   // KV cache capacity; 0: the model's max_position_embeddings
  std::string mode = "full";   // "full" or "window" (sinks + window only)
  int64_t sinks = 128;
  int64_t window = 512;
  int64_t prefill_piece = 4096;  // InprocEngineOptions::prefill_piece
};

// Throws ra::Error naming the file or option on any problem.
ServedModel load_inproc_model(const InprocModelOptions& options);

// The engine of load_inproc_model over `model` (options.model, .tokenizer and .name unused): a backend
// of options.backend with the static set of mode window, or none. Throws ra::Error.
std::unique_ptr<InprocEngine> make_inproc_engine(std::unique_ptr<Model> model, const InprocModelOptions& options);

// A ServedModel around `engine` and `tokenizer` for the checkpoint `model_path` ("" = the demo model):
// its id (`name`, else the folder's or file's name, "demo" for the demo model), its chat template from
// tokenizer_config.json beside the tokenizer file (`tokenizer_arg`) or in the model's folder, and its
// token rules. What `ra serve` uses on the worker rank too.
ServedModel make_served_model(std::unique_ptr<Engine> engine, std::unique_ptr<Tokenizer> tokenizer,
                              const ModelConfig& config, const std::string& model_path,
                              const std::string& tokenizer_arg, const std::string& name);

}  // namespace ra::serve
