#include "bench/decode/bench_decode_command.h"

#include <sys/resource.h>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "bench/decode/offloaded_run.h"
#include "common/error.h"
#include "common/splitmix64.h"
#include "gpu_worker/backend/backend.h"
#include "gpu_worker/model/model_loader.h"
#include "gpu_worker/model/synthetic_model.h"
#include "launcher/config/run_config.h"

#if RA_HAVE_CUDA_BACKEND
#include "gpu_worker/backend/cuda/cuda_backend.h"
#include "gpu_worker/backend/cuda/device_ceilings.h"
#include "gpu_worker/backend/cuda/device_memory.h"
#endif

namespace ra {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

struct BenchDecodeArgs {
  std::string geometry = "llama3-8b";
  std::string model;
  std::vector<int64_t> contexts = {0, 32768, 131072, 524288};
  std::vector<std::string> modes = {"full"};
  int steps = 200;
  int warmup = 20;
  int64_t prefill_max = 131072;
  int64_t layers = 0;  // > 0: override the geometry's layer count (quick runs)
  std::string backend = "auto";
  int64_t sinks = 128;
  int64_t window = 512;
  uint64_t seed = 1;
  std::string json_out;
  // Offloaded modes (through `ra generate`, offloaded_run.h):
  int retrievers = 4;
  int retriever_threads = 0;
  std::string transport = "shm";
  std::vector<double> scan = {0.02};  // each ANN mode once per budget (fraction of keys scanned)
  int run_timeout_s = 1800;
  std::string work_dir = "ra-bench-decode";
};

bool offloaded(const std::string& mode) { return mode != "full" && mode != "window"; }

// Llama-3-8B / Llama-3.1-8B geometry (llama3 RoPE scaling), with room for the longest context asked.
ModelConfig llama3_8b(int64_t max_positions) {
  ModelConfig c;
  c.hidden_size = 4096;
  c.n_layers = 32;
  c.n_heads = 32;
  c.n_kv_heads = 8;
  c.head_dim = 128;
  c.intermediate_size = 14336;
  c.vocab_size = 128256;
  c.max_position_embeddings = std::max<int64_t>(131072, max_positions);
  c.rope_theta = 500000.0f;
  c.rope_scaling = {true, 8.0f, 1.0f, 4.0f, 8192};
  c.rms_norm_eps = 1e-5f;
  c.bos_token_id = 128000;
  c.eos_token_id = 128001;
  return c;
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const auto i = static_cast<size_t>(std::min<double>(static_cast<double>(v.size() - 1), p * static_cast<double>(v.size())));
  return v[i];
}

double peak_host_gib() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / (1024.0 * 1024.0);
}

// Multiply-adds x 2 of one token through every projection (lm_head included) and of a prefill's
// causal attention: QK^T and PV over the i + 1 visible keys of query i.
double matmul_flops_per_token(const ModelConfig& c) {
  const double D = static_cast<double>(c.hidden_size);
  const double per_layer = D * static_cast<double>(c.q_dim() + 2 * c.kv_dim()) + static_cast<double>(c.q_dim()) * D +
                           3.0 * D * static_cast<double>(c.intermediate_size);
  return 2.0 * static_cast<double>(c.n_layers) * per_layer;
}
double prefill_flops(const ModelConfig& c, int64_t n) {
  const double N = static_cast<double>(n);
  const double attention = 2.0 * static_cast<double>(c.n_layers * c.n_heads * c.head_dim) * N * (N + 1.0);
  return matmul_flops_per_token(c) * N + attention + 2.0 * static_cast<double>(c.vocab_size * c.hidden_size);
}

// Bytes one decode step must read at least: every weight but the embedding table (one row of it), the
// lm_head included, and the K/V of the positions it attends over.
double decode_bytes(const ModelConfig& c, double weight_element_bytes, int64_t attended) {
  const double lm_head = static_cast<double>(c.vocab_size * c.hidden_size);
  const double weights = (matmul_flops_per_token(c) / 2.0 + lm_head) * weight_element_bytes;
  const double kv = 2.0 * static_cast<double>(c.n_layers * c.n_kv_heads * c.head_dim) * weight_element_bytes *
                    static_cast<double>(attended);
  return weights + kv;
}

class BenchDecode {
 public:
  explicit BenchDecode(const BenchDecodeArgs& a) : a_(a), kind_(resolve_backend_kind(parse_backend_kind(a.backend))) {
    const int64_t longest = *std::max_element(a_.contexts.begin(), a_.contexts.end()) + a_.steps + a_.warmup + 8;
    if (!a_.model.empty()) {
      model_ = load_model(a_.model);
      config_ = model_->config;
      weight_bytes_ = model_->weight_dtype == "F32" ? 4 : 2;
    } else if (a_.geometry == "llama3-8b") {
      RA_REQUIRE(kind_ == BackendKind::kCuda,
                 "--geometry llama3-8b makes its random weights on the GPU: it needs --backend cuda (use --model "
                 "for a checkpoint on the CPU)");
      config_ = llama3_8b(longest);
      weight_bytes_ = 2;
    } else if (a_.geometry == "demo") {
      SyntheticModelSpec spec;
      spec.max_position_embeddings = std::max<int64_t>(spec.max_position_embeddings, longest);
      if (a_.layers > 0) spec.n_layers = a_.layers;
      model_ = make_synthetic_model(spec);
      config_ = model_->config;
      weight_bytes_ = 4;
    } else {
      raise("--geometry {}: expected llama3-8b or demo", a_.geometry);
    }
    if (a_.layers > 0) config_.n_layers = a_.layers;
    RA_REQUIRE(!model_ || config_.n_layers == model_->config.n_layers,
               "--layers applies to --geometry llama3-8b and demo only");
    for (int64_t ctx : a_.contexts) {
      RA_REQUIRE(ctx >= 0 && ctx + a_.steps + a_.warmup + 2 <= config_.max_position_embeddings,
                 "--context {}: with {} steps it exceeds the model's {} positions", ctx, a_.steps + a_.warmup,
                 config_.max_position_embeddings);
    }
#if RA_HAVE_CUDA_BACKEND
    if (kind_ == BackendKind::kCuda) ceilings_ = cuda::measure_device_ceilings();
#endif
  }

  json run_row(int64_t context, const std::string& mode_name) {
    const AttentionMode mode = parse_mode(mode_name);
    RA_ASSERT(mode == AttentionMode::kFull || mode == AttentionMode::kWindow);  // others: run_pipeline_rows
    json row{{"context", context}, {"mode", mode_name}, {"backend", std::string(name(kind_))},
             {"layers", config_.n_layers}, {"steps", a_.steps}};
    BackendOptions options;
    options.max_positions = context + a_.steps + a_.warmup + 2;
    options.static_set = {mode == AttentionMode::kWindow, a_.sinks, a_.window, nullptr};
#if RA_HAVE_CUDA_BACKEND
    cuda::reset_peak_device_memory();
#endif
    try {
      std::unique_ptr<Backend> backend = make(options);
      const bool prefill = context > 0 && context <= a_.prefill_max;
      if (prefill) {
        std::vector<int32_t> tokens(static_cast<size_t>(context));
        SplitMix64 rng(a_.seed + static_cast<uint64_t>(context));
        for (int32_t& t : tokens) t = static_cast<int32_t>(rng.below(static_cast<uint64_t>(config_.vocab_size)));
        std::vector<float> logits(static_cast<size_t>(config_.vocab_size));
        const auto start = Clock::now();
        backend->forward(tokens, logits);
        const double s = std::chrono::duration<double>(Clock::now() - start).count();
        const double flops = prefill_flops(config_, context);
        row["prefill_s"] = s;
        row["prefill_tokens_per_s"] = static_cast<double>(context) / s;
        row["prefill_tflop_per_s"] = flops / s / 1e12;
        if (ceilings_.bf16_tflop_per_s > 0) row["prefill_mfu"] = flops / s / 1e12 / ceilings_.bf16_tflop_per_s;
      } else {
        backend->fill_cache_for_timing(context, a_.seed);
      }
      std::vector<double> ms = time_steps(*backend, a_.warmup);
      ms = time_steps(*backend, a_.steps);
      row["ms_p50"] = percentile(ms, 0.5);
      row["ms_p99"] = percentile(ms, 0.99);
      double sum = 0;
      for (double m : ms) sum += m;
      row["ms_mean"] = sum / static_cast<double>(ms.size());
      row["timed_on"] = timed_on_device_ ? "device" : "host";
      const int64_t attended = mode == AttentionMode::kFull ? context + 1 : std::min(context + 1, a_.sinks + a_.window);
      row["min_bytes_per_token"] = decode_bytes(config_, weight_bytes_, attended);
      if (ceilings_.copy_gb_per_s > 0) {
        row["floor_ms"] = decode_bytes(config_, weight_bytes_, attended) / (ceilings_.copy_gb_per_s * 1e6);
      }
    } catch (const Error& e) {
      row["skipped"] = e.what();
    }
#if RA_HAVE_CUDA_BACKEND
    if (kind_ == BackendKind::kCuda) {
      row["peak_gpu_gib"] = static_cast<double>(cuda::device_memory_stats().peak_bytes) / (1 << 30);
    }
#endif
    row["peak_host_gib"] = peak_host_gib();
    return row;
  }

  // The random-weight geometry of --geometry llama3-8b, or null (a checkpoint or the demo model).
  const ModelConfig* geometry() const { return model_ ? nullptr : &config_; }

  json ceilings() const {
    return {{"device", ceilings_.device}, {"copy_gb_per_s", ceilings_.copy_gb_per_s},
            {"bf16_tflop_per_s", ceilings_.bf16_tflop_per_s}};
  }

 private:
  std::unique_ptr<Backend> make(const BackendOptions& options) const {
#if RA_HAVE_CUDA_BACKEND
    if (!model_ && kind_ == BackendKind::kCuda) return make_cuda_backend_random(config_, a_.seed, options);
#endif
    RA_ASSERT(model_.has_value());
    return make_backend(kind_, *model_, options);
  }

  // Device-timed steps where the backend can (CUDA graph replays), else host-timed decode_sample calls.
  std::vector<double> time_steps(Backend& backend, int steps) {
    std::vector<double> ms = backend.time_decode_steps(steps);
    timed_on_device_ = !ms.empty();
    if (!ms.empty()) return ms;
    int32_t token = 0;
    for (int i = 0; i < steps; ++i) {
      const auto start = Clock::now();
      token = backend.decode_sample(token, SamplingParams{}, static_cast<uint64_t>(i), {});
      ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - start).count());
    }
    return ms;
  }

  struct Ceilings {
    std::string device = "cpu";
    double copy_gb_per_s = 0;
    double bf16_tflop_per_s = 0;
  };

  const BenchDecodeArgs& a_;
  BackendKind kind_;
  std::optional<Model> model_;
  ModelConfig config_;
  double weight_bytes_ = 2;
  bool timed_on_device_ = false;
#if RA_HAVE_CUDA_BACKEND
  cuda::DeviceCeilings ceilings_;
#else
  Ceilings ceilings_;
#endif
};

std::string fmt_or_dash(const json& row, const char* key, const char* format, double scale = 1.0) {
  if (!row.contains(key)) return "-";
  char buf[64];
  std::snprintf(buf, sizeof buf, format, row[key].get<double>() * scale);
  return buf;
}

// The measured index settings of the 128K runs (configs/llama3-8b-128k.yaml) for mode retrieval.
const std::vector<std::string> kRetrievalIndex = {"graph_max_train_queries: 2048", "graph_key_lists_stride: 0",
                                                  "graph_heads_per_search: 1", "graph_ef_construction: 32",
                                                  "graph_navigation: int8"};

// Every mode through `ra generate`, so that all rows share the pipeline, the prompt, the vocabulary and
// the way a step is timed (its wall time on the worker); each ANN mode once per --scan budget.
json run_pipeline_rows(const BenchDecodeArgs& a, const ModelConfig* geometry, const json& ceil) {
  std::fprintf(stderr,
               "bench decode: offloaded modes asked, so every mode runs as an `ra generate` job (jobs' files in "
               "%s/); rows are host-timed decode steps\n",
               a.work_dir.c_str());
  std::printf("%-9s %-9s %6s %9s %9s %9s %7s %8s %8s %9s %9s %9s %9s %9s %8s %8s\n", "context", "mode", "scan",
              "ms_p50", "ms_p99", "prefill_s", "tail_s", "scanned%", "trips_ms", "between", "q_out_us", "cpu_us",
              "back_us", "gpu_GiB", "wrk_GiB", "ret_GiB");
  json rows = json::array();
  for (int64_t ctx : a.contexts) {
    for (const std::string& mode : a.modes) {
      const bool ann = mode == "ivf" || mode == "hnsw" || mode == "retrieval";
      const std::vector<double> budgets = ann ? a.scan : std::vector<double>{0.0};
      for (const double budget : budgets) {
        OffloadedRunSpec s;
        s.mode = mode;
        s.context = ctx;
        s.decode_steps = a.steps + a.warmup;
        s.backend = a.backend;
        s.geometry = geometry;
        s.model = a.model;
        s.sinks = a.sinks;
        s.window = a.window;
        s.retrievers = a.retrievers;
        s.retriever_threads = a.retriever_threads;
        s.transport = a.transport;
        s.scan_fraction = budget;
        if (mode == "retrieval") s.index_settings = kRetrievalIndex;
        s.seed = a.seed;
        s.timeout_s = a.run_timeout_s;
        s.work_dir = a.work_dir;
        json row = run_offloaded_row(s);
        row["device"] = ceil["device"];
        const json b = row.value("breakdown", json::object());
        std::printf("%-9lld %-9s %6s %9s %9s %9s %7s %8s %8s %9s %9s %9s %9s %9s %8s %8s%s\n",
                    static_cast<long long>(ctx), mode.c_str(), budget > 0 ? fmt::format("{:.3f}", budget).c_str() : "-",
                    fmt_or_dash(row, "ms_p50", "%.3f").c_str(), fmt_or_dash(row, "ms_p99", "%.3f").c_str(),
                    fmt_or_dash(row, "prefill_s", "%.2f").c_str(), fmt_or_dash(row, "build_tail_s", "%.2f").c_str(),
                    fmt_or_dash(b, "scanned_fraction", "%.2f", 100.0).c_str(), fmt_or_dash(b, "round_trips_ms_per_token", "%.3f").c_str(),
                    fmt_or_dash(b, "between_layers_ms_per_token", "%.3f").c_str(), fmt_or_dash(b, "q_out_us", "%.1f").c_str(),
                    fmt_or_dash(b, "retriever_us", "%.1f").c_str(), fmt_or_dash(b, "partials_back_us", "%.1f").c_str(),
                    fmt_or_dash(row, "peak_gpu_gib", "%.2f").c_str(), fmt_or_dash(row, "worker_peak_rss_gib", "%.2f").c_str(),
                    fmt_or_dash(row, "retriever_peak_rss_gib", "%.2f").c_str(),
                    row.contains("skipped") ? ("  skipped: " + row["skipped"].get<std::string>()).c_str() : "");
        std::fflush(stdout);
        rows.push_back(std::move(row));
      }
    }
  }
  return rows;
}

// full and window in this process, device-timed where the backend can (BenchDecode::run_row).
json run_process_rows(const BenchDecodeArgs& a, BenchDecode& bench, const json& ceil) {
  json rows = json::array();
  std::printf("%-9s %-7s %9s %9s %9s %9s %10s %9s %8s %9s %9s\n", "context", "mode", "ms_p50", "ms_p99", "ms_mean",
              "floor_ms", "prefill_s", "prefill_T", "mfu", "gpu_GiB", "host_GiB");
  for (int64_t ctx : a.contexts) {
    for (const std::string& mode : a.modes) {
      json row = bench.run_row(ctx, mode);
      row["device"] = ceil["device"];
      std::printf("%-9lld %-7s %9s %9s %9s %9s %10s %9s %8s %9s %9s%s\n", static_cast<long long>(ctx), mode.c_str(),
                  fmt_or_dash(row, "ms_p50", "%.3f").c_str(), fmt_or_dash(row, "ms_p99", "%.3f").c_str(),
                  fmt_or_dash(row, "ms_mean", "%.3f").c_str(), fmt_or_dash(row, "floor_ms", "%.3f").c_str(),
                  fmt_or_dash(row, "prefill_s", "%.2f").c_str(), fmt_or_dash(row, "prefill_tflop_per_s", "%.0f").c_str(),
                  fmt_or_dash(row, "prefill_mfu", "%.3f").c_str(), fmt_or_dash(row, "peak_gpu_gib", "%.2f").c_str(),
                  fmt_or_dash(row, "peak_host_gib", "%.2f").c_str(),
                  row.contains("skipped") ? ("  skipped: " + row["skipped"].get<std::string>()).c_str() : "");
      std::fflush(stdout);
      rows.push_back(std::move(row));
    }
  }
  return rows;
}

int run_bench_decode(const BenchDecodeArgs& a) {
  BenchDecode bench(a);
  const json ceil = bench.ceilings();
  std::fprintf(stderr, "bench decode: %s, copy %.0f GB/s, bf16 GEMM %.0f TFLOP/s\n",
               ceil["device"].get<std::string>().c_str(), ceil["copy_gb_per_s"].get<double>(),
               ceil["bf16_tflop_per_s"].get<double>());
  const json rows = std::any_of(a.modes.begin(), a.modes.end(), offloaded) ? run_pipeline_rows(a, bench.geometry(), ceil)
                                                                          : run_process_rows(a, bench, ceil);
  if (!a.json_out.empty()) {
    std::ofstream out(a.json_out);
    out << json{{"ceilings", ceil}, {"rows", rows}}.dump(2) << "\n";
    RA_REQUIRE(out.good(), "--json {}: cannot write it", a.json_out);
  }
  return 0;
}

}  // namespace

void add_bench_decode_command(CLI::App& bench) {
  auto a = std::make_shared<BenchDecodeArgs>();
  CLI::App* cmd = bench.add_subcommand("decode", "Decode ms/token (p50/p99), prefill rate and memory per context length");
  cmd->add_option("--geometry", a->geometry, "Random weights of this shape: llama3-8b (made on the GPU) or demo")
      ->capture_default_str();
  cmd->add_option("--model", a->model, "A checkpoint instead of random weights");
  cmd->add_option("--context", a->contexts, "Context lengths (positions already in the cache)")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--modes", a->modes,
                  "Attention modes: full, window, flat, ivf, hnsw, retrieval. With an offloaded one every mode runs as "
                  "an `ra generate` job (mpirun, the worker and --retrievers retriever ranks) and its figures come "
                  "from that run; full and window alone run in this process, device-timed")
      ->delimiter(',')
      ->capture_default_str()
      ->check(CLI::IsMember({"full", "window", "flat", "ivf", "hnsw", "retrieval"}));
  cmd->add_option("--retrievers", a->retrievers, "Offloaded modes: retriever ranks")->capture_default_str()->check(
      CLI::PositiveNumber);
  cmd->add_option("--retriever-threads", a->retriever_threads, "Offloaded modes: threads per retriever; 0 = the plan's")
      ->capture_default_str();
  cmd->add_option("--transport", a->transport, "Offloaded modes: shm or ucx")->capture_default_str()->check(
      CLI::IsMember({"shm", "ucx"}));
  cmd->add_option("--scan", a->scan,
                  "ivf, hnsw, retrieval: search budgets, fractions of the keys scanned (index.scan_fraction); one row "
                  "per budget")
      ->delimiter(',')
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--run-timeout", a->run_timeout_s, "Offloaded modes: seconds before a job is stopped")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--work-dir", a->work_dir, "Offloaded modes: where each job's config, report and log are kept")
      ->capture_default_str();
  cmd->add_option("--steps", a->steps, "Timed decode steps per row")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--warmup", a->warmup, "Untimed decode steps first")->capture_default_str()->check(CLI::NonNegativeNumber);
  cmd->add_option("--prefill-max", a->prefill_max,
                  "Prefill (and time) the context when it is at most this long; longer contexts get random KV")
      ->capture_default_str();
  cmd->add_option("--layers", a->layers, "Override the number of layers (quick runs)")->check(CLI::NonNegativeNumber);
  cmd->add_option("--backend", a->backend, "cuda, cpu or auto")->capture_default_str()->check(
      CLI::IsMember({"auto", "cpu", "cuda"}));
  cmd->add_option("--sinks", a->sinks, "Mode window: sinks")->capture_default_str();
  cmd->add_option("--window", a->window, "Mode window: window")->capture_default_str();
  cmd->add_option("--seed", a->seed, "Seed of the random weights, KV and prompt")->capture_default_str();
  cmd->add_option("--json", a->json_out, "Write {ceilings, rows} to this file");
  cmd->callback([a] {
    const int rc = run_bench_decode(*a);
    if (rc != 0) throw CLI::RuntimeError(rc);
  });
}

}  // namespace ra
