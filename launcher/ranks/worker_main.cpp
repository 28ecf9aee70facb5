// ra-gpu-worker: the decoding rank of a pipeline job (DESIGN §2–§3). mpirun starts it as rank 0 with
// `--plan PLAN.json`. It loads the model, connects to the retrievers, prefills the prompt, ships the
// offloaded KV and training queries, and decodes with the static set on its backend and the rest on
// the retrievers. Generated text goes to stdout, statistics to stderr. Exit codes: 0 on success, 1 on
// any error (a failed retriever is named by rank and host), 128 + N on signal N.

#include <omp.h>

#include <cstdio>

#include <fmt/format.h>

#include "gpu_worker/decode/generator.h"
#include "gpu_worker/model/synthetic_model.h"
#include "gpu_worker/model/tokenizer.h"
#if RA_HAVE_CUDA_BACKEND
#include "gpu_worker/backend/cuda/cuda_backend.h"
#endif
#include "gpu_worker/offload/prefill_shipper.h"
#include "gpu_worker/offload/retrieval_client.h"
#include "launcher/ranks/model_setup.h"
#include "launcher/ranks/peer_links.h"
#include "launcher/ranks/process_common.h"
#include "launcher/ranks/worker_binding.h"
#include "launcher/ranks/retriever_reports.h"
#include "launcher/ranks/retriever_setup.h"
#include "launcher/ranks/run_report.h"
#include "launcher/ranks/serve_rank.h"
#include "launcher/ranks/worker_setup.h"
#include "transport/heartbeat.h"

namespace ra {
namespace {

constexpr const char* kProgram = "ra-gpu-worker";

std::unique_ptr<Backend> make_random_backend(const ModelConfig& config, uint64_t seed, const BackendOptions& options) {
#if RA_HAVE_CUDA_BACKEND
  return make_cuda_backend_random(config, seed, options);
#else
  (void)config, (void)seed, (void)options;
  raise("random weights on the GPU need the CUDA backend, which this build lacks");
#endif
}

int run(transport::MpiSession& mpi, int argc, char** argv) {
  const RunPlan plan = read_plan_file(plan_path_from_args(argc, argv, kProgram));
  install_exit_signal_handlers("");
  agree_on_plan(mpi, plan, kProgram);
  RA_REQUIRE(mpi.rank() == 0, "{} must be rank 0 (it is rank {})", kProgram, mpi.rank());
  std::fprintf(stderr, "%s: %s; %s\n", kProgram, bind_worker_near_gpu(plan).c_str(),
               describe_rank_waits(plan, false).c_str());
  if (const char* serve = serve_spec_from_environment()) return run_serve_rank(mpi, plan, serve);  // ra serve
  const RunConfig& c = plan.config;
  if (c.worker_threads > 0) omp_set_num_threads(c.worker_threads);

  // Connect first: loading a large checkpoint (or making random weights) takes longer than the start-up
  // deadline, and the retrievers wait for the handshake under liveness, not a deadline.
  PeerLinks links = connect_peers(mpi, plan);
  transport::HeartbeatThread heartbeat(links.raw());

  // A `geometry` (random weights) on the CUDA backend: the weights are made on the GPU (seconds, where
  // the host's float32 copy of an 8B model would take minutes and 32 GiB).
  const bool gpu_random = random_weights_on_gpu(c);
  LoadedModel loaded;
  if (gpu_random) {
    loaded.synthetic = true;
    loaded.model.config = synthetic_model_config(*c.geometry);
    loaded.model.source = fmt::format("synthetic(seed={}, random weights made on the GPU)", c.geometry->seed);
    loaded.model.weight_dtype = plan.geometry.kv_dtype;  // what the plan assumed for the retrievers' KV
    loaded.tokenizer = make_byte_tokenizer(loaded.model.config.vocab_size);
  } else {
    loaded = load_model_for(c);
  }
  const Model& model = loaded.model;
  const ModelConfig& mc = model.config;
  check_geometry(plan, model);
  const std::vector<int32_t> prompt = prompt_tokens(loaded, prompt_text_for(c, loaded));

  RetrievalClient client(links.raw(), retrieval_client_options(plan, mc));
  client.handshake(plan_digest(plan), canonical_plan_text(plan));
  for (const std::string& line : describe_retriever_reports(plan, client.reports(), mpi.host())) {
    std::fprintf(stderr, "%s: %s\n", kProgram, line.c_str());
  }

  const bool graph = c.mode == AttentionMode::kRetrieval;
  PrefillCapture capture(mc, static_cast<int64_t>(prompt.size()), c.sinks, c.window, prefill_queries_to_ship(c),
                         ships_prefill_queries(c), client.kv_rows());
  BackendOptions options;
  options.max_positions = std::min<int64_t>(mc.max_position_embeddings,
                                            static_cast<int64_t>(prompt.size()) + c.max_new_tokens);
  options.threads = c.worker_threads;
  options.qkv_observer = capture.observer();
  options.observe_kv_rows = client.kv_rows();  // the CUDA backend codes K and V on the GPU
  // The graph's training lists, found by the backend while each layer's keys are resident (the CUDA
  // backend does); otherwise the retrievers find them.
  // With a graph per kv head, also each key's best training queries (index.graph_connect_query_lists).
  const int key_query_width = graph && c.index.graph_heads_per_search > 0 ? c.index.graph_connect_query_lists : 0;
  if (graph) options.train_lists = capture.train_list_options(c.index.graph_Kq, key_query_width);
  PrefillShipper shipper(client, capture);  // each layer leaves as soon as the backend has it
  options.static_set = {true, c.sinks, c.window, &client};
  const auto backend = gpu_random ? make_random_backend(mc, c.geometry->seed, options) : make_backend(c.backend, model, options);
  if (graph && backend->computes_train_lists()) capture.expect_train_lists(c.index.graph_Kq, key_query_width);

  std::fprintf(stderr, "%s: model %s (%s), mode %s, %d retrievers over %s\n", kProgram, model.source.c_str(),
               describe(mc).c_str(), std::string(name(c.mode)).c_str(), plan.num_retrievers(),
               std::string(name(c.transport)).c_str());
  GenerateOptions gen = generate_options_for(c);
  gen.after_prefill = [&] { shipper.finish(); };
  gen.on_progress = progress_printer(stderr, &client.stats());
  const GenerateStats stats = generate(*backend, *loaded.tokenizer, prompt, gen, write_generated_text);
  client.shutdown(std::chrono::seconds(10));
  print_run_stats(stderr, *backend, c, stats, &client.stats());
  if (!c.report_json.empty()) write_run_report_json(c.report_json, *backend, c, stats, &client.stats());
  const PrefillShipTimes& ship = shipper.times();
  std::fprintf(stderr,
               "prefill shipping: %.3f s sending (overlapping the prefill); the prefill waited %.3f s for it and "
               "spent %.3f s copying its chunks to the capture\n",
               ship.ship_seconds, ship.backend_wait_seconds, capture.copy_seconds());
  mpi.barrier("shutdown", transport::deadline_after(std::chrono::seconds(30)));
  return 0;
}

}  // namespace
}  // namespace ra

int main(int argc, char** argv) { return ra::run_pipeline_process(ra::kProgram, argc, argv, ra::run); }
