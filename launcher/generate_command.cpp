#include "launcher/generate_command.h"

#include <omp.h>

#include <cstdio>
#include <memory>

#include "common/error.h"
#include "gpu_worker/decode/generator.h"
#include "gpu_worker/model/synthetic_model.h"
#include "launcher/model_setup.h"


namespace ra {

void add_generate_command(CLI::App& app) {
  auto args = std::make_shared<GenerateArgs>();
  CLI::App* cmd = app.add_subcommand("generate", "Decode a prompt and print the generated text to stdout");
  cmd->add_option("--model", args->model,
                  "Hugging Face checkpoint directory or llama2.c .bin file (default: an embedded "
                  "deterministic demo model)");
  cmd->add_option("--tokenizer", args->tokenizer,
                  "'bytes', or a llama2.c tokenizer .bin (default: found beside the model)");
  auto* prompt = cmd->add_option("--prompt", args->prompt, "Prompt text");
  auto* prompt_file = cmd->add_option("--prompt-file", args->prompt_file, "Read the prompt from a file (raw bytes)");
  prompt->excludes(prompt_file);
  cmd->add_option("--max-new-tokens", args->max_new_tokens, "Tokens to generate")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--temperature", args->temperature, "Sampling temperature; 0 is greedy")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--seed", args->seed, "Sampling seed")->capture_default_str();
  cmd->add_option("--threads", args->threads, "Compute threads (default: all cores)")->check(CLI::NonNegativeNumber);
  cmd->add_option("--synthetic-prompt-bytes", args->synthetic_prompt_bytes,
                  "Length of the synthetic prompt used when no prompt is given to the demo model")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->callback([args, prompt, prompt_file] {
    args->prompt_given = prompt->count() > 0 || prompt_file->count() > 0;
    const int rc = run_generate(*args);
    if (rc != 0) throw CLI::RuntimeError(rc);
  });
}

int run_generate(const GenerateArgs& args) {
  if (args.threads > 0) {
    omp_set_num_threads(args.threads);
  }
  const LoadedModel loaded = load_model_and_tokenizer(args.model, args.tokenizer);
  const Model& model = loaded.model;
  const ModelConfig& c = model.config;
  const Tokenizer* tokenizer = loaded.tokenizer.get();

  std::string text;
  if (!args.prompt_file.empty()) {
    text = read_prompt_file(args.prompt_file);
  } else if (args.prompt_given) {
    text = args.prompt;
  } else if (loaded.synthetic) {
    text = make_synthetic_prompt(args.synthetic_prompt_bytes, kSyntheticPromptSeed);
  }
  const std::vector<int32_t> prompt = prompt_tokens(loaded, text);

  BackendOptions options;
  options.max_positions =
      std::min<int64_t>(c.max_position_embeddings, static_cast<int64_t>(prompt.size()) + args.max_new_tokens);
  const std::unique_ptr<Backend> backend = make_cpu_backend(model, options);

  std::fprintf(stderr, "model: %s (%s)\ntokenizer: %s\n", model.source.c_str(), describe(c).c_str(),
               tokenizer->name().c_str());
  GenerateOptions gen;
  gen.max_new_tokens = args.max_new_tokens;
  gen.temperature = args.temperature;
  gen.seed = args.seed;
  const GenerateStats stats = generate(*backend, *tokenizer, prompt, gen, [](std::string_view piece) {
    std::fwrite(piece.data(), 1, piece.size(), stdout);
    std::fflush(stdout);
  });

  const double prefill_tps = stats.prefill_seconds > 0 ? stats.prompt_tokens / stats.prefill_seconds : 0.0;
  const int64_t decode_steps = std::max<int64_t>(0, stats.generated_tokens - 1);  // first token comes from prefill
  const double decode_tps = stats.decode_seconds > 0 ? decode_steps / stats.decode_seconds : 0.0;
  std::fprintf(stderr,
               "\nbackend: %s, mode: full\nprompt tokens: %lld\nprefill: %.1f tokens/s (%.3f s)\n"
               "decode: %.1f tokens/s (%lld steps in %.3f s; %lld tokens generated)\n",
               backend->name().c_str(), static_cast<long long>(stats.prompt_tokens), prefill_tps,
               stats.prefill_seconds, decode_tps, static_cast<long long>(decode_steps), stats.decode_seconds,
               static_cast<long long>(stats.generated_tokens));
  if (stats.hit_context_limit) {
    std::fprintf(stderr, "stopped: reached the model's context limit of %lld positions\n",
                 static_cast<long long>(c.max_position_embeddings));
  }
  return 0;
}

}  // namespace ra
