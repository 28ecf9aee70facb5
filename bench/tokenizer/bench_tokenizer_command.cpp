#include "bench/tokenizer/bench_tokenizer_command.h"

#include <time.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "common/error.h"
#include "gpu_worker/model/hf_tokenizer.h"

namespace ra {
namespace {

using Clock = std::chrono::steady_clock;

struct Args {
  std::string tokenizer, text, json;
  int repeat = 5;
};

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// CPU time of this thread: on a shared machine, time the thread was not running does not count.
double thread_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  RA_REQUIRE(in.good(), "--text {}: cannot open", path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void run(const Args& a) {
  RA_REQUIRE(a.repeat >= 1, "--repeat {}: must be at least 1", a.repeat);
  const std::string text = read_text(a.text);
  auto t0 = Clock::now();
  const HfTokenizer tok(a.tokenizer);
  const double load_s = seconds_since(t0);
  std::vector<int32_t> ids = tok.encode(text);  // warm-up
  double best = 1e30, best_cpu = 1e30;
  for (int r = 0; r < a.repeat; ++r) {
    t0 = Clock::now();
    const double c0 = thread_cpu_seconds();
    ids = tok.encode(text);
    best_cpu = std::min(best_cpu, thread_cpu_seconds() - c0);
    best = std::min(best, seconds_since(t0));
  }
  // Streaming decode, as the generator prints tokens: one piece per id.
  t0 = Clock::now();
  const std::unique_ptr<StreamDecoder> decoder = tok.stream_decoder({}, /*skip_special=*/true);
  size_t decoded_bytes = 0;
  for (int32_t id : ids) decoded_bytes += decoder->put(id).size();
  decoded_bytes += decoder->finish().size();
  const double stream_s = seconds_since(t0);

  const double mb = static_cast<double>(text.size()) / 1e6;
  nlohmann::ordered_json row;
  row["impl"] = "ra (C++)";
  row["tokenizer"] = a.tokenizer;
  row["bytes"] = text.size();
  row["tokens"] = ids.size();
  row["load_s"] = load_s;
  row["encode_s"] = best;
  row["encode_cpu_s"] = best_cpu;
  row["mb_per_s"] = mb / best;
  row["tokens_per_s"] = std::llround(static_cast<double>(ids.size()) / best);
  row["stream_decode_tokens_per_s"] = std::llround(static_cast<double>(ids.size()) / stream_s);
  row["stream_decoded_bytes"] = decoded_bytes;
  const std::string line = row.dump();
  std::printf("%s\n", line.c_str());
  if (!a.json.empty()) {
    std::ofstream out(a.json, std::ios::app);
    RA_REQUIRE(out.good(), "--json {}: cannot write", a.json);
    out << line << "\n";
  }
}

}  // namespace

void add_bench_tokenizer_command(CLI::App& bench) {
  auto args = std::make_shared<Args>();
  CLI::App* cmd = bench.add_subcommand("tokenizer", "Encode and streaming-decode throughput of a tokenizer.json, one thread");
  cmd->add_option("--tokenizer", args->tokenizer, "Hugging Face tokenizer.json")->required();
  cmd->add_option("--text", args->text, "Text file to encode (e.g. 4 MB)")->required();
  cmd->add_option("--repeat", args->repeat, "Timed encodes after one warm-up; the best is reported")->capture_default_str();
  cmd->add_option("--json", args->json, "Append the row (one JSON line) to this file");
  cmd->callback([args] { run(*args); });
}

}  // namespace ra
