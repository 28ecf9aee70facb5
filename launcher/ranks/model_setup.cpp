#include "launcher/ranks/model_setup.h"

#include <cstdio>
#include <fstream>
#include <iterator>

#include "common/error.h"
#include "gpu_worker/backend/backend.h"
#include "gpu_worker/model/model_loader.h"
#include "gpu_worker/model/synthetic_model.h"
#include "launcher/ranks/run_report.h"

namespace ra {

LoadedModel load_model_and_tokenizer(const std::string& model_arg, const std::string& tokenizer_arg) {
  LoadedModel out;
  out.synthetic = model_arg.empty();
  out.model = out.synthetic ? make_synthetic_model({}) : load_model(model_arg);
  out.tokenizer = out.synthetic && tokenizer_arg.empty() ? make_byte_tokenizer(out.model.config.vocab_size)
                                                         : resolve_tokenizer(tokenizer_arg, model_arg, out.model.config);
  return out;
}

LoadedModel load_model_for(const RunConfig& c) {
  if (c.model.empty() && c.geometry) {
    LoadedModel out;
    out.synthetic = true;
    out.model = make_synthetic_model(*c.geometry);
    out.tokenizer = make_byte_tokenizer(out.model.config.vocab_size);
    return out;
  }
  return load_model_and_tokenizer(c.model, c.tokenizer);
}

std::string prompt_text_for(const RunConfig& c, const LoadedModel& loaded) {
  if (!c.prompt_file.empty()) return read_prompt_file(c.prompt_file);
  if (!c.prompt.empty()) return c.prompt;
  if (loaded.synthetic) return make_synthetic_prompt(c.synthetic_prompt_bytes, kSyntheticPromptSeed);
  return {};
}

bool worker_on_gpu(const RunConfig& c) { return resolve_backend_kind(c.backend) == BackendKind::kCuda; }

bool random_weights_on_gpu(const RunConfig& c) { return c.model.empty() && c.geometry && worker_on_gpu(c); }

Geometry geometry_for(const RunConfig& c, bool gpu_random) {
  if (c.model.empty()) {
    const SyntheticModelSpec spec = c.geometry.value_or(SyntheticModelSpec{});
    ModelConfig mc;
    mc.n_layers = spec.n_layers;
    mc.n_heads = spec.n_heads;
    mc.n_kv_heads = spec.n_kv_heads;
    mc.head_dim = spec.head_dim;
    // Random weights: float32 on the host, bf16 when ra-gpu-worker makes them on the GPU, so that the
    // retrievers' `auto` store and the wire take the dtype the worker's KV really has.
    return make_geometry(mc, gpu_random ? "BF16" : "F32");
  }
  const Model model = load_model(c.model);
  return make_geometry(model.config, model.weight_dtype);
}

std::string read_prompt_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  RA_REQUIRE(in.good(), "--prompt-file {}: cannot open", path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::vector<int32_t> encode_prompt(const LoadedModel& loaded, std::string_view text) {
  const ModelConfig& c = loaded.model.config;
  std::vector<int32_t> tokens;
  const TokenizerSpecials sp = loaded.tokenizer->specials();  // a tokenizer.json names its own BOS rule
  const int32_t bos = sp.bos_id >= 0 ? sp.bos_id : c.bos_token_id;
  if (sp.add_bos.value_or(true) && bos >= 0) tokens.push_back(bos);
  const std::vector<int32_t> encoded = loaded.tokenizer->encode(text);
  tokens.insert(tokens.end(), encoded.begin(), encoded.end());
  return tokens;
}

std::vector<int32_t> prompt_tokens(const LoadedModel& loaded, std::string_view text) {
  const ModelConfig& c = loaded.model.config;
  std::vector<int32_t> tokens = encode_prompt(loaded, text);
  RA_REQUIRE(static_cast<int64_t>(tokens.size()) <= c.max_position_embeddings,
             "the prompt has {} tokens but {} allows at most {} (max_position_embeddings)", tokens.size(),
             loaded.model.source, c.max_position_embeddings);
  return tokens;
}

GenerateOptions generate_options_for(const RunConfig& c) {
  GenerateOptions gen;
  gen.max_new_tokens = c.max_new_tokens;
  gen.ignore_eos = c.ignore_eos;
  gen.progress_every = c.progress_every;
  gen.temperature = c.temperature;
  gen.top_p = c.top_p;
  gen.seed = c.seed;
  gen.on_logits = logits_trace_from_env();
  return gen;
}

void write_generated_text(std::string_view piece) {
  std::fwrite(piece.data(), 1, piece.size(), stdout);
  std::fflush(stdout);
}

}  // namespace ra
