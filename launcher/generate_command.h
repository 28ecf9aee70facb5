#pragma once
// `ra generate`: decode a prompt with a model and print the text.

#include <CLI/CLI.hpp>

#include <cstdint>
#include <string>

namespace ra {

struct GenerateArgs {
  std::string model;        // directory (HF) or .bin (llama2.c); empty = embedded synthetic model
  std::string tokenizer;    // "bytes", a llama2.c tokenizer file, or empty = find beside the model
  std::string prompt;
  std::string prompt_file;
  bool prompt_given = false;
  int64_t max_new_tokens = 64;
  float temperature = 0.0f;
  uint64_t seed = 0;
  int threads = 0;
  int64_t synthetic_prompt_bytes = 8192;
};

// Registers the subcommand and its options on `app`; the callback runs it.
void add_generate_command(CLI::App& app);

// Runs the command: generated text to stdout only, statistics to stderr. Returns the exit code.
int run_generate(const GenerateArgs& args);

}  // namespace ra
