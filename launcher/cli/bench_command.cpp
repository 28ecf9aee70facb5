#include "launcher/cli/bench_command.h"

#include "bench/retrieval/bench_retrieval_command.h"
#include "bench/transport/bench_transport_command.h"
#include "bench/decode/bench_decode_command.h"
#include "bench/tokenizer/bench_tokenizer_command.h"
#include "bench/accuracy/bench_accuracy_command.h"

namespace ra {

void add_bench_command(CLI::App& app) {
  CLI::App* bench = app.add_subcommand("bench", "Benchmarks");
  bench->require_subcommand(1);
  add_bench_retrieval_command(*bench);
  add_bench_transport_command(*bench);
  add_bench_decode_command(*bench);
  add_bench_tokenizer_command(*bench);
  add_bench_accuracy_command(*bench);
}

}  // namespace ra
