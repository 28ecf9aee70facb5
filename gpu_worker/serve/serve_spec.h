#pragma once
// What `ra serve` and `ra prefill` (launcher/cli/serve_command.h) tell the worker rank of their mpirun
// job, beyond the run config of the plan file: the HTTP server's knobs and what to do with a saved
// context. It travels as JSON in the environment variable RA_SERVE (mpirun -x), so the rank programs
// and the plan file stay those of `ra generate`.

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>

#include "gpu_worker/serve/server_options.h"

namespace ra::serve {

inline constexpr const char* kServeSpecEnv = "RA_SERVE";

struct ServeSpec {
  std::string action = "serve";  // "serve": the HTTP server; "prefill": prefill the prompt, save it, exit
  ServeOptions server;
  std::string port_file;         // the bound port is written here once listening (with port 0: any free port)
  std::string name;              // the model id clients name; empty: the checkpoint folder's name, or "demo"
  int64_t ctx = 0;               // KV cache capacity in tokens; 0: the model's max_position_embeddings
  std::string load;              // serve: a saved context to load first (`ra prefill --save`)
  std::string save;              // prefill: where to save it
  double exit_grace_seconds = 1.5;  // once the engine failed: /health answers 503 this long, then exit 1
};

nlohmann::json to_json(const ServeSpec& spec);
// Throws ra::Error naming `source` and the field.
ServeSpec serve_spec_from_json(const std::string& text, const std::string& source);

}  // namespace ra::serve
