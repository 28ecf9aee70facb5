#pragma once
// `ra needle-prompt`: write a needle-in-a-haystack prompt for the byte-level needle model to a file and
// print the expected answer, so shell scripts and benchmarks can score `ra generate --prompt-file`.

#include <CLI/CLI.hpp>

#include <cstdint>
#include <string>

namespace ra {

struct NeedlePromptArgs {
  int64_t tokens = 4096;               // prompt length in byte tokens, BOS included
  int facts = 4;
  uint64_t seed = 1;
  std::string out;                     // the prompt bytes, without BOS (ra generate adds it)
  std::string haystack = "/usr/include";
};

// Registers the subcommand and its options on `app`; the callback runs it.
void add_needle_prompt_command(CLI::App& app);

// Writes the prompt to args.out, prints the answer's digits and a newline to stdout and a summary of the
// facts to stderr. Returns the exit code; throws ra::Error on bad input or an unwritable file.
int run_needle_prompt(const NeedlePromptArgs& args);

}  // namespace ra
