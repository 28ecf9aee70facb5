#pragma once
// `ra bench`: the group of benchmark subcommands. Their code lives with the benchmarks (bench/); this
// only gathers them under one name.
//   ra bench retrieval   bench/retrieval/bench_retrieval_command.h
//   ra bench transport   bench/transport/bench_transport_command.h
//   ra bench decode      bench/decode/bench_decode_command.h
//   ra bench tokenizer   bench/tokenizer/bench_tokenizer_command.h
//   ra bench accuracy    bench/accuracy/bench_accuracy_command.h

#include <CLI/CLI.hpp>

namespace ra {

// Registers `bench` and its subcommands on `app`.
void add_bench_command(CLI::App& app);

}  // namespace ra
