// `ra`: the user-facing command. Only main() turns errors into exit codes.

#include <CLI/CLI.hpp>

#include <cstdio>
#include <exception>

#include "common/error.h"
#include "launcher/cli/bench_command.h"
#include "launcher/cli/dump_qkv_command.h"
#include "launcher/cli/generate_command.h"
#include "launcher/cli/needle_command.h"
#include "launcher/cli/serve_command.h"
#include "launcher/cli/version.h"
#include "launcher/cli/dump_logits_command.h"

int main(int argc, char** argv) {
  CLI::App app{"ra: RetrievalAttention decoding for long-context Llama models"};
  app.set_version_flag("--version", std::string("ra ") + RA_VERSION);
  app.require_subcommand(1);
  ra::add_generate_command(app);
  ra::add_serve_command(app);
  ra::add_prefill_command(app);
  ra::add_needle_prompt_command(app);
  ra::add_dump_qkv_command(app);
  ra::add_dump_logits_command(app);
  ra::add_bench_command(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const ra::Error& e) {
    std::fprintf(stderr, "ra: error: %s\n", e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "ra: error: out of memory\n");
    return 1;
  }
  return 0;
}
