#pragma once
// `ra bench tokenizer` (issue 19): single-thread encode throughput of a Hugging Face tokenizer.json on a
// text file (e.g. 4 MB, about 1M Llama-3 tokens), best of --repeat runs after a warm-up, wall and thread
// CPU time; then the streaming decode of the same ids. One JSON line on stdout (appended to --json),
// in the row shape scripts/bench_tokenizer.sh puts beside the reference's JavaScript port.
//
//   ra bench tokenizer --tokenizer DIR/tokenizer.json --text corpus.txt --repeat 5 [--json F]

#include <CLI/CLI.hpp>

namespace ra {

// Registers `tokenizer` under `bench` (the subcommand made by add_bench_command).
void add_bench_tokenizer_command(CLI::App& bench);

}  // namespace ra
