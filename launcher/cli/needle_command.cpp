#include "launcher/cli/needle_command.h"

#include <cstdio>
#include <fstream>
#include <memory>

#include "common/cli_exit.h"
#include "common/error.h"
#include "launcher/needle_task.h"

namespace ra {

void add_needle_prompt_command(CLI::App& app) {
  auto args = std::make_shared<NeedlePromptArgs>();
  CLI::App* cmd = app.add_subcommand(
      "needle-prompt",
      "Write a needle-in-a-haystack prompt (byte tokens) to a file and print the expected answer to stdout");
  cmd->add_option("--tokens", args->tokens, "Prompt length in byte-level tokens, BOS included")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--facts", args->facts, "Magic-number facts hidden in the haystack (1-16)")
      ->capture_default_str()
      ->check(CLI::Range(1, 16));
  cmd->add_option("--seed", args->seed, "Seed for the haystack order, the facts and their depths")
      ->capture_default_str();
  cmd->add_option("--out", args->out, "File to write the prompt bytes to (without BOS)")->required();
  cmd->add_option("--haystack", args->haystack, "Folder whose *.h files make the haystack")
      ->capture_default_str();
  on_run_exit_with(*cmd, [args] { return run_needle_prompt(*args); });
}

int run_needle_prompt(const NeedlePromptArgs& args) {
  const NeedlePrompt prompt = make_needle_prompt(args.tokens, args.facts, args.seed, args.haystack);
  {
    std::ofstream out(args.out, std::ios::binary | std::ios::trunc);
    RA_REQUIRE(out.good(), "--out {}: cannot open for writing", args.out);
    out.write(prompt.text.data(), static_cast<std::streamsize>(prompt.text.size()));
    out.flush();
    RA_REQUIRE(out.good(), "--out {}: write failed", args.out);
  }
  std::fprintf(stderr, "needle prompt: %lld tokens (BOS + %zu bytes), seed %llu, haystack %s\n",
               static_cast<long long>(args.tokens), prompt.text.size(), static_cast<unsigned long long>(args.seed),
               args.haystack.c_str());
  for (const NeedleFact& f : prompt.facts) {
    std::fprintf(stderr, "  fact: %s = %s at token %lld (depth %.1f%%)%s\n", f.name.c_str(), f.number.c_str(),
                 static_cast<long long>(f.offset + 1), 100.0 * static_cast<double>(f.offset + 1) / args.tokens,
                 f.name == prompt.question_name ? "  <- asked" : "");
  }
  std::printf("%s\n", prompt.answer.c_str());
  return 0;
}

}  // namespace ra
