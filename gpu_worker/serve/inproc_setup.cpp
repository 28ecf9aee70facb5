#include "gpu_worker/serve/inproc_setup.h"

#include <filesystem>
#include <memory>

#include "common/error.h"
#include "gpu_worker/model/model_loader.h"
#include "gpu_worker/model/synthetic_model.h"

namespace ra::serve {
namespace fs = std::filesystem;

ServedModel make_served_model(std::unique_ptr<Engine> engine, std::unique_ptr<Tokenizer> tokenizer,
                              const ModelConfig& config, const std::string& model_path,
                              const std::string& tokenizer_arg, const std::string& name) {
  const bool demo = model_path.empty();
  ServedModel served;
  served.engine = std::move(engine);
  served.tokenizer = std::move(tokenizer);
  // The chat template lives in tokenizer_config.json, beside the tokenizer.
  if (!tokenizer_arg.empty() && tokenizer_arg != "bytes") {
    served.chat = load_chat_template(fs::path(tokenizer_arg).parent_path());
  } else if (!demo) {
    served.chat = load_chat_template(fs::is_directory(model_path) ? fs::path(model_path)
                                                                   : fs::path(model_path).parent_path());
  } else {
    served.chat.unavailable = "the demo model has no chat template";
  }
  if (!name.empty()) {
    served.name = name;
  } else if (demo) {
    served.name = "demo";
  } else {
    const fs::path p = fs::path(model_path).lexically_normal();
    served.name = (p.has_filename() ? p : p.parent_path()).filename().string();
  }
  derive_token_rules(served, config);
  return served;
}

namespace {

void check_mode(const InprocModelOptions& o) {
  RA_REQUIRE(o.mode == "full" || o.mode == "window",
             "--mode {}: this server runs full or window in process (the retrieval modes need the retriever ranks "
             "of `ra serve`)",
             o.mode);
}

}  // namespace

std::unique_ptr<InprocEngine> make_inproc_engine(std::unique_ptr<Model> model, const InprocModelOptions& o) {
  check_mode(o);
  BackendOptions options;
  options.max_positions = o.max_positions;
  options.threads = o.threads;
  options.static_set = {o.mode == "window", o.sinks, o.window, nullptr};
  std::unique_ptr<Backend> backend = make_backend(resolve_backend_kind(o.backend), *model, options);
  InprocEngineOptions engine_options;
  engine_options.mode = o.mode;
  engine_options.prefill_piece = o.prefill_piece;
  engine_options.threads = o.threads;
  return std::make_unique<InprocEngine>(std::move(model), std::move(backend), engine_options);
}

ServedModel load_inproc_model(const InprocModelOptions& o) {
  check_mode(o);  // before a long load
  const bool demo = o.model.empty();
  auto model = std::make_unique<Model>(demo ? make_synthetic_model({}) : load_model(o.model));
  std::unique_ptr<Tokenizer> tokenizer = demo && o.tokenizer.empty() ? make_byte_tokenizer(model->config.vocab_size)
                                                                     : resolve_tokenizer(o.tokenizer, o.model,
                                                                                         model->config);
  const ModelConfig config = model->config;
  return make_served_model(make_inproc_engine(std::move(model), o), std::move(tokenizer), config, o.model,
                           o.tokenizer, o.name);
}

}  // namespace ra::serve
