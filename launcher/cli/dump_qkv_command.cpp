#include "launcher/cli/dump_qkv_command.h"

#include <omp.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <memory>
#include <system_error>
#include <vector>

#include "common/cli_exit.h"
#include "common/error.h"
#include "common/npy.h"
#include "gpu_worker/backend/backend.h"
#include "gpu_worker/model/model_loader.h"
#include "gpu_worker/model/synthetic_model.h"
#include "gpu_worker/model/tokenizer.h"
#include "launcher/ranks/model_setup.h"


namespace ra {
namespace {

// One layer's three output files, filled chunk by chunk.
struct LayerFiles {
  NpyF32Writer q, k, v;
};

// Copies heads [0, heads) of a token-major chunk src: [n][heads * head_dim] into the head-major file
// (heads, T, head_dim) at token offset `position`. scratch: at least n * head_dim floats.
void write_heads(NpyF32Writer& file, const float* src, int64_t n, int64_t heads, int64_t head_dim,
                 int64_t tokens, int64_t position, std::vector<float>& scratch) {
  const int64_t row = heads * head_dim;
  for (int64_t h = 0; h < heads; ++h) {
    for (int64_t i = 0; i < n; ++i) {
      std::copy_n(src + i * row + h * head_dim, head_dim, scratch.data() + i * head_dim);
    }
    file.write((h * tokens + position) * head_dim,
               std::span<const float>(scratch.data(), static_cast<size_t>(n * head_dim)));
  }
}

}  // namespace

void add_dump_qkv_command(CLI::App& app) {
  auto args = std::make_shared<DumpQkvArgs>();
  CLI::App* cmd = app.add_subcommand(
      "dump-qkv",
      "Run the decoder (--backend) over a prompt and write each layer's post-RoPE q/k and v as .npy "
      "(q_l{L}.npy (n_heads,T,head_dim), k_l{L}.npy and v_l{L}.npy (n_kv_heads,T,head_dim), meta.json)");
  cmd->add_option("--model", args->model,
                  "Hugging Face checkpoint directory or llama2.c .bin file (default: the embedded demo model "
                  "and its synthetic prompt)");
  cmd->add_option("--tokenizer", args->tokenizer,
                  "'bytes', a llama2.c tokenizer .bin or a Hugging Face tokenizer.json (default: found beside the model)");
  cmd->add_option("--prompt-file", args->prompt_file,
                  "Read the prompt from a file (raw bytes); BOS is prepended. Required with --model");
  cmd->add_option("--out", args->out, "Output directory (created if missing; existing dump files are replaced)")
      ->required();
  cmd->add_option("--threads", args->threads, "Compute threads (default: all cores)")->check(CLI::NonNegativeNumber);
  cmd->add_option("--backend", args->backend, "Compute backend: cuda, cpu or auto (cuda when a GPU is visible)")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}));
  cmd->add_option("--max-tokens", args->max_tokens,
                  "Dump only the first N tokens of the prompt, BOS included (default: all)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--prefill-chunk", args->prefill_chunk,
                  "Tokens per prefill step: bounds the score memory at chunk x T floats")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--synthetic-prompt-bytes", args->synthetic_prompt_bytes,
                  "Length of the synthetic prompt used by the demo model when no --prompt-file is given")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  on_run_exit_with(*cmd, [args] { return run_dump_qkv(*args); });
}

int run_dump_qkv(const DumpQkvArgs& args) {
  if (args.threads > 0) {
    omp_set_num_threads(args.threads);
  }
  const LoadedModel loaded = load_model_and_tokenizer(args.model, args.tokenizer);
  RA_REQUIRE(loaded.synthetic || !args.prompt_file.empty(), "--prompt-file is required with --model {}", args.model);
  const Model& model = loaded.model;
  const ModelConfig& c = model.config;
  const std::string text = !args.prompt_file.empty()
                               ? read_prompt_file(args.prompt_file)
                               : make_synthetic_prompt(args.synthetic_prompt_bytes, kSyntheticPromptSeed);
  std::vector<int32_t> tokens = encode_prompt(loaded, text);
  if (args.max_tokens > 0 && static_cast<int64_t>(tokens.size()) > args.max_tokens) {
    tokens.resize(static_cast<size_t>(args.max_tokens));
  }

  DumpQkvOptions options;
  options.prefill_chunk = args.prefill_chunk;
  options.threads = args.threads;
  options.backend = parse_backend_kind(args.backend);
  const DumpQkvStats stats = dump_qkv(model, tokens, args.out, options);
  std::fprintf(stderr,
               "dump-qkv: %lld tokens, %lld layers (%lld q heads, %lld kv heads, head_dim %lld) -> %s in %.2f s\n",
               static_cast<long long>(stats.tokens), static_cast<long long>(stats.layers),
               static_cast<long long>(c.n_heads), static_cast<long long>(c.n_kv_heads),
               static_cast<long long>(c.head_dim), args.out.c_str(), stats.seconds);
  return 0;
}

DumpQkvStats dump_qkv(const Model& model, std::span<const int32_t> tokens, const std::filesystem::path& out_dir,
                      const DumpQkvOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  const ModelConfig& c = model.config;
  const auto T = static_cast<int64_t>(tokens.size());
  RA_REQUIRE(T > 0, "dump-qkv: the prompt is empty and {} has no BOS token: nothing to dump", model.source);
  RA_REQUIRE(T <= c.max_position_embeddings,
             "dump-qkv: the prompt has {} tokens but {} allows at most {} (max_position_embeddings); "
             "use --max-tokens to dump a prefix",
             T, model.source, c.max_position_embeddings);

  std::error_code ec;
  std::filesystem::create_directories(out_dir, ec);
  RA_REQUIRE(!ec, "--out {}: cannot create the directory: {}", out_dir.string(), ec.message());
  const std::filesystem::path meta_path = out_dir / "meta.json";
  std::filesystem::remove(meta_path, ec);  // a dump without meta.json is incomplete
  RA_REQUIRE(!ec, "{}: cannot remove the previous meta.json: {}", meta_path.string(), ec.message());

  // Files are created at full size up front and filled as the chunks arrive.
  const int64_t hd = c.head_dim;
  const std::vector<int64_t> q_shape = {c.n_heads, T, hd};
  const std::vector<int64_t> kv_shape = {c.n_kv_heads, T, hd};
  std::vector<LayerFiles> files;
  files.reserve(static_cast<size_t>(c.n_layers));
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const std::string suffix = "_l" + std::to_string(l) + ".npy";
    files.push_back({NpyF32Writer(out_dir / ("q" + suffix), q_shape), NpyF32Writer(out_dir / ("k" + suffix), kv_shape),
                     NpyF32Writer(out_dir / ("v" + suffix), kv_shape)});
  }

  BackendOptions backend_options;
  backend_options.max_positions = T;
  backend_options.prefill_chunk = std::max<int64_t>(1, options.prefill_chunk);
  backend_options.threads = options.threads;
  std::vector<float> scratch;  // one head's rows of a chunk; chunk sizes depend on the backend
  backend_options.qkv_observer = [&](const QkvChunk& chunk) {
    RA_ASSERT(chunk.layer >= 0 && chunk.layer < c.n_layers && chunk.position + chunk.n <= T);
    if (static_cast<int64_t>(scratch.size()) < chunk.n * hd) scratch.resize(static_cast<size_t>(chunk.n * hd));
    LayerFiles& f = files[static_cast<size_t>(chunk.layer)];
    write_heads(f.q, chunk.q, chunk.n, c.n_heads, hd, T, chunk.position, scratch);
    write_heads(f.k, chunk.k, chunk.n, c.n_kv_heads, hd, T, chunk.position, scratch);
    write_heads(f.v, chunk.v, chunk.n, c.n_kv_heads, hd, T, chunk.position, scratch);
  };
  const std::unique_ptr<Backend> backend = make_backend(options.backend, model, backend_options);
  std::vector<float> logits(static_cast<size_t>(c.vocab_size));
  backend->forward(tokens, logits);
  RA_ASSERT(backend->position() == T);
  for (LayerFiles& f : files) {
    f.q.close();
    f.k.close();
    f.v.close();
  }

  nlohmann::json meta;
  meta["n_layers"] = c.n_layers;
  meta["n_heads"] = c.n_heads;
  meta["n_kv_heads"] = c.n_kv_heads;
  meta["head_dim"] = c.head_dim;
  meta["tokens"] = T;
  meta["scale"] = c.attn_scale();
  meta["model"] = model.source;
  meta["rope_theta"] = c.rope_theta;
  meta["prefill_chunk"] = backend_options.prefill_chunk;
  meta["backend"] = backend->name();
  meta["format"] = "q_l{L}.npy (n_heads,T,head_dim), k_l{L}.npy and v_l{L}.npy (n_kv_heads,T,head_dim); "
                   "float32, post-RoPE q and k";
  {
    std::ofstream out(meta_path, std::ios::trunc);
    RA_REQUIRE(out.good(), "{}: cannot open for writing", meta_path.string());
    out << meta.dump(2) << '\n';
    out.flush();
    RA_REQUIRE(out.good(), "{}: write failed", meta_path.string());
  }

  DumpQkvStats stats;
  stats.tokens = T;
  stats.layers = c.n_layers;
  stats.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return stats;
}

}  // namespace ra
