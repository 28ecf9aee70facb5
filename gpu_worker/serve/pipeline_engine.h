#pragma once
// The Engine of `ra serve` on the worker rank of an mpirun job (modes flat, ivf, hnsw, retrieval): the
// backend keeps the sinks and the window (a static set) and the retrievers, behind a RetrievalClient,
// hold the rest (DESIGN §3).
//
// Prebuilt contexts. The retrievers' shards and indexes are built from one prefill: the base, a
// document of base_len tokens. Every token evicted after it goes to the retrievers' session tails
// (transport/messages.h kRewind), so the shards stay the base's. A request whose prompt starts with a
// registered context (GenerationRequest::reusable_prefix) continues from the state right after that
// context's tokens:
//   - held (the base is a prefix of the context and the resident tokens start with the context): the
//     backend returns to the context's end (Backend::truncate: the window comes back from its cache, or
//     from its copy of the base's window; where it cannot reach that position, it returns to the
//     latest one it reaches, at worst the base, and the resident tokens since run again),
//     the retrievers drop their session tails past the matching position (kRewind), and the rest of the
//     prompt runs as decode steps, each token attending to the static set and the retrievers;
//   - not held: the context is prefilled as a new base first (a cold prefill and index build), then
//     the rest as above. So a context gives the same tokens whether it was resident or rebuilt.
// A prompt with no registered context is prefilled whole as the base. The last token's logits of every
// base, and of the latest prompt, are kept, so a prompt that is exactly a context needs no step.
//
// A retriever that fails (PeerError: dead, silent, a deadline, a kError) makes the engine fail for
// good: the request in flight gets EngineFailure naming it, health() reports it, and idle() finds it
// between requests. A cancel is seen between prefill chunks (through the backend's QKV observer),
// between the prompt's decode steps and before every generated token.

#include <array>
#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "gpu_worker/backend/backend.h"
#include "gpu_worker/model/model.h"
#include "gpu_worker/offload/retrieval_client.h"
#include "gpu_worker/serve/context_files.h"
#include "gpu_worker/serve/engine.h"
#include "gpu_worker/serve/engine_common.h"
#include "gpu_worker/serve/saved_kv.h"
#include "transport/channel.h"

namespace ra::serve {

struct PipelineEngineOptions {
  std::string mode = "retrieval";  // flat, ivf, hnsw or retrieval (info() and saved contexts)
  BackendKind backend = BackendKind::kCpu;
  int threads = 0;                 // OpenMP threads of the generate() thread; 0: leave them
  int64_t max_positions = 0;       // KV capacity; 0: the model's max_position_embeddings
  int64_t sinks = 128;
  int64_t window = 512;
  bool capture_queries = false;    // the index trains on prefill queries (retrieval mode)
  int64_t max_train_queries = 0;   // PrefillCapture's
  std::chrono::milliseconds rewind_timeout{10000};
  // Writing or restoring every layer's shards of a saved context, per retriever (the file's size).
  std::chrono::milliseconds shard_file_timeout{std::chrono::minutes(30)};
  // Tests: makes the backend instead of make_backend(backend, ...).
  std::function<std::unique_ptr<Backend>(const Model&, const BackendOptions&)> make_backend;
};

class PipelineEngine final : public Engine {
 public:
  // `client` (handshake done) reaches the retrievers over `channels` (the same ones, in its order);
  // the engine owns the model and the client; the channels must outlive it.
  PipelineEngine(std::unique_ptr<Model> model, std::unique_ptr<RetrievalClient> client,
                 std::vector<transport::Channel*> channels, const PipelineEngineOptions& options);
  ~PipelineEngine() override;

  const EngineInfo& info() const override { return info_; }
  EngineHealth health() const override { return failure_.health(); }
  GenerationStats generate(const GenerationRequest& request, TokenSink& sink) override;
  void idle() noexcept override;

  // The saved-context identity of this engine's model and mode (context_files.h).
  ContextIdentity identity() const;
  // `ra prefill --save DIR`: prefills `tokens` as the base and writes it: the worker's static KV, every
  // layer's shipped rows, and each retriever's built shards (kSaveShards, retriever-NNN.shards; DIR must
  // be reachable by the retrievers' hosts). Before the server runs (not thread-safe with generate()).
  void prefill_and_save(std::span<const int32_t> tokens, const std::string& dir);
  // `ra serve --load DIR`: the saved base, its KV restored; the retrievers restore their saved shards
  // (kLoadShards) when the save has them for this retriever count, shard plan and mode, else they
  // rebuild their indexes from the saved rows (load_note() says which and why). Returns its tokens.
  // Throws ra::Error naming the file and field when the save is corrupt or was made with another model,
  // geometry or mode. Before the server runs.
  std::vector<int32_t> load(const std::string& dir);
  // What the last load() did with the retrievers' indexes, one line.
  const std::string& load_note() const { return load_note_; }
  bool load_restored_indexes() const { return load_restored_indexes_; }

  // Tells the retrievers to leave (kShutdown). Best effort; call once, after the server stopped.
  void shutdown(std::chrono::milliseconds timeout) noexcept;
  const RetrievalStats& retrieval_stats() const { return client_->stats(); }

 private:
  class RoundTrips;
  class RetrievalProbe;
  struct Cancelled {};

  GenerationStats run(const GenerationRequest& request, TokenSink& sink);
  // Where a request on a context of `prefix` tokens can continue from: a position in [base_len_, prefix]
  // whose state is held, or -1.
  int64_t held_position(std::span<const int32_t> prompt, int64_t prefix) const;
  // Prefills tokens as the new base (the retrievers rebuild every layer); the writer saves it.
  void build_base(std::span<const int32_t> tokens, const std::atomic<bool>* cancel, ContextWriter* save);
  // Returns the backend and the retrievers to position p (>= base_len_) of the resident tokens; where the
  // backend cannot return there directly (Backend::can_truncate_to), to an earlier position and runs
  // the resident tokens up to p again (a cancel stops that as it stops step_through).
  // Returns the position the backend returned to (the tokens reused without running again).
  int64_t rewind_to(int64_t p, const std::atomic<bool>* cancel);
  // Runs tokens at resident_.size() as decode steps; logits_ gets the last one's.
  void step_through(std::span<const int32_t> tokens, const std::atomic<bool>* cancel);
  void send_rewind(int64_t position);
  // The worker's static set after n tokens: the sinks [0, S) and the window [max(S, n - W), n).
  std::array<KvRange, 2> static_ranges(int64_t n) const;
  void fail(const std::string& cause);
  // Empty when the save's retriever shards can be restored here; else why not (they are rebuilt).
  std::string restorable_shards(const ContextReader& reader) const;

  std::unique_ptr<Model> model_;
  std::unique_ptr<RetrievalClient> client_;
  std::vector<transport::Channel*> channels_;
  std::unique_ptr<RoundTrips> round_trips_;
  std::unique_ptr<Backend> backend_;  // after the two above: it calls them
  PipelineEngineOptions options_;
  EngineInfo info_;
  QkvObserver capture_observer_;              // the current base prefill's PrefillCapture, or empty
  const std::atomic<bool>* prefill_cancel_ = nullptr;
  std::vector<int32_t> resident_;             // the tokens the backend's cache and the retrievers hold
  int64_t base_len_ = 0;                      // resident_[0, base_len_) built the retrievers' shards; 0: none
  std::vector<float> logits_;                 // [vocab] float32: the latest forward's
  std::vector<float> base_logits_;            // [vocab]: after the base's last token
  std::vector<float> prompt_logits_;          // [vocab]: after the latest prompt's last token...
  int64_t prompt_logits_at_ = -1;             // ...at this position (-1: none)
  std::vector<std::byte> message_;            // idle() polls
  std::string load_note_;
  bool load_restored_indexes_ = false;
  EngineFailureState failure_;
};

}  // namespace ra::serve
