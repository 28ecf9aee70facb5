#include "launcher/cli/dump_logits_command.h"

#include <nlohmann/json.hpp>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "common/error.h"
#include "common/npy.h"
#include "gpu_worker/backend/backend.h"
#include "gpu_worker/decode/sampler.h"
#include "gpu_worker/model/model_loader.h"

namespace ra {
namespace {

struct DumpLogitsArgs {
  std::string model;
  std::string tokens_file;
  std::string out;
  std::string backend = "auto";
  int64_t prefill_tokens = 1;
  int64_t stride = 64;
};

// Whitespace-separated decimal token ids.
std::vector<int32_t> read_token_ids(const std::string& path, int64_t vocab) {
  std::ifstream in(path);
  RA_REQUIRE(in.good(), "--tokens-file {}: cannot open", path);
  std::vector<int32_t> ids;
  std::string word;
  while (in >> word) {
    size_t used = 0;
    long long v = -1;
    try {
      v = std::stoll(word, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    RA_REQUIRE(used == word.size() && v >= 0 && v < vocab, "--tokens-file {}: token {} ('{}') is not an id in [0, {})",
               path, ids.size(), word, vocab);
    ids.push_back(static_cast<int32_t>(v));
  }
  RA_REQUIRE(!ids.empty(), "--tokens-file {}: no token ids", path);
  return ids;
}

int run_dump_logits(const DumpLogitsArgs& a) {
  const auto start = std::chrono::steady_clock::now();
  const Model model = load_model(a.model);
  const ModelConfig& c = model.config;
  const std::vector<int32_t> tokens = read_token_ids(a.tokens_file, c.vocab_size);
  const auto T = static_cast<int64_t>(tokens.size());
  RA_REQUIRE(a.prefill_tokens >= 1 && a.prefill_tokens <= T, "--prefill-tokens {} must be in [1, {}]",
             a.prefill_tokens, T);
  RA_REQUIRE(a.stride >= 1, "--stride must be >= 1");
  BackendOptions options;
  options.max_positions = T;
  const std::unique_ptr<Backend> backend = make_backend(parse_backend_kind(a.backend), model, options);

  std::vector<int64_t> positions, logits_positions;
  std::vector<int32_t> argmaxes;
  std::vector<float> kept;  // [R'][vocab]
  std::vector<float> logits(static_cast<size_t>(c.vocab_size));
  auto record = [&](int64_t t) {
    positions.push_back(t);
    argmaxes.push_back(argmax(logits));
    if ((t - (a.prefill_tokens - 1)) % a.stride == 0 || t == T - 1) {
      logits_positions.push_back(t);
      kept.insert(kept.end(), logits.begin(), logits.end());
    }
  };
  backend->forward(std::span(tokens).first(static_cast<size_t>(a.prefill_tokens)), logits);
  record(a.prefill_tokens - 1);
  for (int64_t t = a.prefill_tokens; t < T; ++t) {
    backend->forward(std::span(tokens).subspan(static_cast<size_t>(t), 1), logits);
    record(t);
  }

  const std::filesystem::path out(a.out);
  std::error_code ec;
  std::filesystem::create_directories(out, ec);
  RA_REQUIRE(!ec, "--out {}: cannot create the directory: {}", a.out, ec.message());
  const auto R = static_cast<int64_t>(positions.size());
  const auto Rk = static_cast<int64_t>(logits_positions.size());
  write_npy_i64(out / "positions.npy", std::vector<int64_t>{R}, positions);
  write_npy_i32(out / "argmax.npy", std::vector<int64_t>{R}, argmaxes);
  write_npy_i64(out / "logits_positions.npy", std::vector<int64_t>{Rk}, logits_positions);
  write_npy_f32(out / "logits.npy", std::vector<int64_t>{Rk, c.vocab_size}, kept);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  nlohmann::json meta{{"model", model.source}, {"backend", backend->name()}, {"tokens", T},
                      {"prefill_tokens", a.prefill_tokens}, {"stride", a.stride}, {"vocab_size", c.vocab_size},
                      {"seconds", seconds}};
  std::ofstream(out / "meta.json") << meta.dump(2) << "\n";
  std::fprintf(stderr, "dump-logits: %lld tokens (%lld prefilled) on %s -> %s in %.2f s\n", static_cast<long long>(T),
               static_cast<long long>(a.prefill_tokens), backend->name().c_str(), a.out.c_str(), seconds);
  return 0;
}

}  // namespace

void add_dump_logits_command(CLI::App& app) {
  auto a = std::make_shared<DumpLogitsArgs>();
  CLI::App* cmd = app.add_subcommand(
      "dump-logits", "Write a decoder's logits for a token sequence (prefill of the first P tokens, then one by one)");
  cmd->add_option("--model", a->model, "Hugging Face checkpoint directory or llama2.c .bin")->required();
  cmd->add_option("--tokens-file", a->tokens_file, "Whitespace-separated decimal token ids")->required();
  cmd->add_option("--out", a->out, "Output directory (created if missing)")->required();
  cmd->add_option("--backend", a->backend, "cuda, cpu or auto")->capture_default_str()->check(
      CLI::IsMember({"auto", "cpu", "cuda"}));
  cmd->add_option("--prefill-tokens", a->prefill_tokens, "Tokens in the first (prefill) forward")->capture_default_str();
  cmd->add_option("--stride", a->stride, "Keep the full logits of every S-th position (and the last)")
      ->capture_default_str();
  cmd->callback([a] {
    const int rc = run_dump_logits(*a);
    if (rc != 0) throw CLI::RuntimeError(rc);
  });
}

}  // namespace ra
