#include "gpu_worker/serve/pipeline_engine.h"

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "common/error.h"
#include "gpu_worker/offload/prefill_capture.h"
#include "gpu_worker/offload/prefill_shipper.h"
#include "gpu_worker/serve/saved_kv.h"
#include "gpu_worker/serve/saved_layers.h"

namespace ra::serve {
namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Length of the common prefix of a and b.
size_t common_prefix(std::span<const int32_t> a, std::span<const int32_t> b) {
  const size_t n = std::min(a.size(), b.size());
  return static_cast<size_t>(std::mismatch(a.begin(), a.begin() + static_cast<std::ptrdiff_t>(n), b.begin()).first -
                             a.begin());
}

}  // namespace

// The client, timed: each layer's round trip (q out, partials back) of the latest decode step.
class PipelineEngine::RoundTrips final : public RemoteAttention {
 public:
  RoundTrips(RemoteAttention& inner, int64_t n_layers)
      : inner_(inner), started_(static_cast<size_t>(n_layers)), seconds_(static_cast<size_t>(n_layers)) {}

  void begin(int64_t layer, int64_t position, const float* q, int64_t evict_position, const float* k,
             const float* v) override {
    started_[static_cast<size_t>(layer)] = Clock::now();
    inner_.begin(layer, position, q, evict_position, k, v);
  }
  void finish(int64_t layer, float* o, float* lse) override {
    inner_.finish(layer, o, lse);
    seconds_[static_cast<size_t>(layer)] = seconds_since(started_[static_cast<size_t>(layer)]);
  }
  std::span<const double> seconds() const { return seconds_; }

 private:
  RemoteAttention& inner_;
  std::vector<Clock::time_point> started_;
  std::vector<double> seconds_;  // [n_layers]
};

// One request's retrieval measurements: the keys the retrievers scanned since the last measure (the
// first counts the prefill's), and each layer's round trip of the decode step just taken.
class PipelineEngine::RetrievalProbe final : public StepProbe {
 public:
  RetrievalProbe(const RetrievalClient& client, const RoundTrips& round_trips)
      : client_(client), round_trips_(round_trips), scanned_(client.stats().distance_computations) {}

  void measure(StepStats& step) override {
    const int64_t now = client_.stats().distance_computations;
    step.keys_scanned = now - scanned_;
    scanned_ = now;
    if (!first_) step.round_trip_seconds = round_trips_.seconds();  // the prefill's are not one step's
    first_ = false;
  }

 private:
  const RetrievalClient& client_;
  const RoundTrips& round_trips_;
  int64_t scanned_;
  bool first_ = true;
};

PipelineEngine::PipelineEngine(std::unique_ptr<Model> model, std::unique_ptr<RetrievalClient> client,
                               std::vector<transport::Channel*> channels, const PipelineEngineOptions& options)
    : model_(std::move(model)), client_(std::move(client)), channels_(std::move(channels)), options_(options) {
  RA_ASSERT(model_ && client_);
  const ModelConfig& mc = model_->config;
  round_trips_ = std::make_unique<RoundTrips>(*client_, mc.n_layers);
  BackendOptions bo;
  bo.max_positions = options.max_positions;
  bo.threads = options.threads;
  // Sees every chunk of the base's prefill (and every decode step, which it ignores).
  bo.qkv_observer = [this](const QkvChunk& chunk) {
    if (!capture_observer_) return;
    if (prefill_cancel_ != nullptr && prefill_cancel_->load(std::memory_order_relaxed)) throw Cancelled{};
    capture_observer_(chunk);
  };
  bo.observe_kv_rows = client_->kv_rows();  // a CUDA backend codes the base's K and V on the GPU
  bo.static_set = {true, options.sinks, options.window, round_trips_.get()};
  backend_ = options.make_backend ? options.make_backend(*model_, bo) : make_backend(options.backend, *model_, bo);
  info_ = engine_info(*backend_, options.mode, /*has_retrieval=*/true);
  resident_.reserve(static_cast<size_t>(info_.max_positions));
  logits_.resize(static_cast<size_t>(mc.vocab_size));
  prompt_logits_.resize(logits_.size());
}

PipelineEngine::~PipelineEngine() = default;

void PipelineEngine::fail(const std::string& cause) {
  if (!failure_.set(cause)) return;
  resident_.clear();
  base_len_ = 0;
}

ContextIdentity PipelineEngine::identity() const {
  ContextIdentity id = context_identity(*model_, options_.mode);
  id.sinks = options_.sinks;
  id.window = options_.window;
  id.queries = options_.capture_queries;
  return id;
}

GenerationStats PipelineEngine::generate(const GenerationRequest& request, TokenSink& sink) {
  check_request(request, info_);
  if (failure_.failed()) throw EngineFailure(failure_.health().cause);
  if (options_.threads > 0) omp_set_num_threads(options_.threads);
  try {
    return run(request, sink);
  } catch (const std::exception& e) {
    // A retriever died or stopped answering, a deadline passed, or the backend failed: the retrievers'
    // state and the cache can no longer be trusted.
    fail(e.what());
    throw EngineFailure(e.what());
  }
}

void PipelineEngine::idle() noexcept {
  if (failure_.failed()) return;
  try {
    for (transport::Channel* ch : channels_) {
      transport::MessageHeader h;
      if (!ch->try_recv(h, message_)) continue;  // checks the peer's liveness too
      if (h.kind == transport::to_wire(transport::MessageKind::kError)) {
        fail(fmt::format("{} failed: {}", ch->peer_name(),
                         std::string_view(reinterpret_cast<const char*>(message_.data()), message_.size())));
      } else {
        fail(fmt::format("{} sent message kind {} while no request was running", ch->peer_name(), h.kind));
      }
      return;
    }
  } catch (const std::exception& e) {
    fail(e.what());
  }
}

void PipelineEngine::send_rewind(int64_t position) { client_->rewind(position, options_.rewind_timeout); }

int64_t PipelineEngine::held_position(std::span<const int32_t> prompt, int64_t prefix) const {
  if (base_len_ == 0 || !info_.contexts_unsupported.empty()) return -1;
  const auto n = static_cast<int64_t>(prompt.size());
  // The base must be the request's context (or, without one, the whole prompt): the state after a
  // context is always that of the context prefilled as the base, whatever ran before.
  if (base_len_ != (prefix > 0 ? prefix : n)) return -1;
  const auto held = static_cast<int64_t>(common_prefix(resident_, prompt));
  if (held < base_len_) return -1;
  // The first generated token needs the last prompt token's logits: kept for the base and for the
  // latest prompt; otherwise that token runs again.
  if (held == n && n != base_len_ && n != prompt_logits_at_) return n - 1 >= base_len_ ? n - 1 : -1;
  return held;
}

int64_t PipelineEngine::rewind_to(int64_t p, const std::atomic<bool>* cancel) {
  RA_ASSERT(p >= base_len_ && p <= static_cast<int64_t>(resident_.size()));
  // A backend that keeps only the window (cuda) returns to the base, or to a later position whose window
  // it still holds: from the latest one it reaches, the tokens up to p run again.
  int64_t q = p;
  while (q > base_len_ && !backend_->can_truncate_to(q)) --q;
  const std::vector<int32_t> again(resident_.begin() + q, resident_.begin() + p);
  backend_->truncate(q);
  resident_.resize(static_cast<size_t>(q));
  if (prompt_logits_at_ > p) prompt_logits_at_ = -1;
  // Before the step at q the retrievers hold [S, q - W): the base's [S, base_len - W) and the session's
  // evictions since.
  send_rewind(std::max(options_.sinks, q - options_.window));
  step_through(again, cancel);
  return q;
}

void PipelineEngine::step_through(std::span<const int32_t> tokens, const std::atomic<bool>* cancel) {
  for (const int32_t t : tokens) {
    if (cancel != nullptr && cancel->load(std::memory_order_relaxed)) throw Cancelled{};
    const int32_t one[1] = {t};
    backend_->forward(one, logits_);
    resident_.push_back(t);
  }
}

void PipelineEngine::build_base(std::span<const int32_t> tokens, const std::atomic<bool>* cancel,
                                ContextWriter* save) {
  const ModelConfig& mc = model_->config;
  const auto n = static_cast<int64_t>(tokens.size());
  resident_.clear();
  base_len_ = 0;
  prompt_logits_at_ = -1;
  backend_->reset();
  PrefillCapture capture(mc, n, options_.sinks, options_.window, options_.max_train_queries, options_.capture_queries,
                         client_->kv_rows());
  try {
    PrefillShipper shipper(*client_, capture);  // each layer leaves as soon as the backend has it
    if (save != nullptr) {  // written before it is shipped (and released)
      capture.on_layer_complete = [&capture, &mc, save, ship = capture.on_layer_complete](int64_t l) {
        save_layer(*save, capture, l, mc);
        ship(l);
      };
    }
    capture_observer_ = capture.observer();
    prefill_cancel_ = cancel;
    backend_->forward(tokens, logits_);
    capture_observer_ = nullptr;
    prefill_cancel_ = nullptr;
    shipper.finish();  // the retrievers have built every layer
  } catch (const Cancelled&) {
    capture_observer_ = nullptr;
    prefill_cancel_ = nullptr;
    backend_->reset();
    client_->wait_builds();  // the layers shipped before the cancel still answer: take their kBuildDone
    throw;
  } catch (...) {
    capture_observer_ = nullptr;
    prefill_cancel_ = nullptr;
    throw;
  }
  send_rewind(std::max(options_.sinks, n - options_.window));  // session mode; the tails are empty
  backend_->keep_base();
  resident_.assign(tokens.begin(), tokens.end());
  base_len_ = n;
  base_logits_ = logits_;
}

GenerationStats PipelineEngine::run(const GenerationRequest& r, TokenSink& sink) {
  GenerationStats stats;
  const auto n = static_cast<int64_t>(r.prompt.size());
  stats.prompt_tokens = n;
  stats.finish = FinishReason::kCancelled;
  if (r.cancel != nullptr && r.cancel->load(std::memory_order_relaxed)) return stats;
  RetrievalProbe probe(*client_, *round_trips_);  // counts the prefill's keys too

  const auto prefill_start = Clock::now();
  try {
    // A context being built (nothing to generate) becomes the base itself, so that the requests on
    // it find it held.
    const int64_t prefix = r.max_tokens == 0 ? n : r.reusable_prefix;
    int64_t start = held_position(r.prompt, prefix);
    if (start >= 0) {
      stats.reused_tokens = rewind_to(start, r.cancel);
    } else {
      // The context (or the whole prompt) is not held: prefilled as the base, as it was first.
      start = prefix > 0 && info_.contexts_unsupported.empty() ? prefix : n;
      build_base(r.prompt.first(static_cast<size_t>(start)), r.cancel, nullptr);
    }
    if (start < n) {
      step_through(r.prompt.subspan(static_cast<size_t>(start)), r.cancel);
    } else if (n == base_len_) {
      logits_ = base_logits_;
    } else {
      RA_ASSERT(n == prompt_logits_at_);
      logits_ = prompt_logits_;
    }
  } catch (const Cancelled&) {
    stats.prefill_seconds = seconds_since(prefill_start);
    return stats;
  }
  stats.prefill_seconds = seconds_since(prefill_start);
  prompt_logits_ = logits_;
  prompt_logits_at_ = n;
  RA_ASSERT(static_cast<int64_t>(resident_.size()) == backend_->position());
  if (r.max_tokens == 0) {
    stats.finish = FinishReason::kLength;
    return stats;
  }
  decode_tokens(*backend_, r, logits_, sink, resident_, &probe, stats);
  return stats;
}

std::array<KvRange, 2> PipelineEngine::static_ranges(int64_t n) const {
  const int64_t sinks_end = std::min(options_.sinks, n);
  return {KvRange{0, sinks_end}, KvRange{std::max(sinks_end, n - options_.window), n}};
}

void PipelineEngine::prefill_and_save(std::span<const int32_t> tokens, const std::string& dir) {
  RA_REQUIRE(!tokens.empty(), "the document is empty");
  RA_REQUIRE(static_cast<int64_t>(tokens.size()) <= info_.max_positions,
             "the document has {} tokens but the KV cache holds {} positions", tokens.size(), info_.max_positions);
  ContextWriter writer(dir);
  build_base(tokens, nullptr, &writer);
  save_worker_kv(writer, *backend_, static_ranges(static_cast<int64_t>(tokens.size())));
  save_logits(writer, base_logits_);
  // Each retriever's shards as built (its session tail, empty after build_base, is not part of them).
  SavedShards saved;
  saved.owned_kv_heads = client_->owned_kv_heads();
  std::vector<std::string> paths;
  for (size_t r = 0; r < client_->retrievers(); ++r) {
    saved.files.push_back(retriever_shard_file(r));
    paths.push_back(absolute_path(dir, saved.files.back()));
  }
  const std::vector<transport::ShardFilePayload> files = client_->save_shards(paths, options_.shard_file_timeout);
  for (size_t r = 0; r < files.size(); ++r) writer.record(saved.files[r], files[r].bytes, files[r].fnv1a64);
  writer.set_retriever_shards(saved);
  writer.finish(identity(), tokens);
}

std::vector<int32_t> PipelineEngine::load(const std::string& dir) {
  const ModelConfig& mc = model_->config;
  const ContextReader reader(dir, identity());
  const std::vector<int32_t>& tokens = reader.tokens();
  const auto n = static_cast<int64_t>(tokens.size());
  RA_REQUIRE(n <= info_.max_positions, "{}: the saved context has {} tokens, more than this server's KV cache of {} "
             "positions (--ctx)", reader.path("manifest.json"), n, info_.max_positions);
  resident_.clear();
  base_len_ = 0;
  prompt_logits_at_ = -1;
  backend_->reset();
  const std::array<KvRange, 2> ranges = static_ranges(n);
  const int64_t S = ranges[0].end;               // the offloaded rows are [S, offloaded_end)
  const int64_t offloaded_end = ranges[1].begin;
  load_worker_kv(reader, *backend_, ranges,
                 fmt::format("{} tokens with sinks {} and window {}", n, options_.sinks, options_.window));
  load_logits(reader, mc.vocab_size, base_logits_);
  load_restored_indexes_ = false;
  load_note_ = restorable_shards(reader);
  if (load_note_.empty()) {
    // The retrievers' shards as saved: no index is built again.
    const SavedShards& saved = *reader.retriever_shards();
    std::vector<std::string> paths;
    std::vector<transport::ShardFilePayload> files;
    for (const std::string& f : saved.files) {
      paths.push_back(absolute_path(dir, f));
      const FileEntry e = reader.entry(f);
      files.push_back({e.bytes, e.fnv1a64, 0});
    }
    client_->load_shards(paths, files, options_.shard_file_timeout);
    load_restored_indexes_ = true;
    load_note_ = fmt::format("the {} retrievers restored their saved shards and indexes ({} layers): none rebuilt",
                             saved.files.size(), mc.n_layers);
  }
  // Else every layer's rows, shipped as after a prefill; the retrievers build their indexes from them.
  LayerExpectation expect;
  expect.first_position = S;
  expect.n_keys = offloaded_end - S;
  expect.split = fmt::format("{} tokens with sinks {} and window {}", n, options_.sinks, options_.window);
  expect.mode = options_.mode;
  expect.needs_queries = options_.capture_queries;
  expect.kv_rows = client_->kv_rows();
  for (int64_t l = 0; l < mc.n_layers && !load_restored_indexes_; ++l) {
    const SavedLayer saved(reader, l, mc, expect);
    const LayerHeader& h = saved.header();
    client_->send_build(l, h.first_position, h.n_keys, saved.keys(), saved.values(), h.n_train,
                        saved.train_queries(), h.n_window, saved.window_queries());
  }
  if (!load_restored_indexes_) client_->wait_builds();
  send_rewind(offloaded_end);
  backend_->keep_base();
  resident_ = tokens;
  base_len_ = n;
  return tokens;
}

std::string PipelineEngine::restorable_shards(const ContextReader& reader) const {
  const std::optional<SavedShards>& saved = reader.retriever_shards();
  if (!saved) return "the save holds no retriever shards: the retrievers rebuild their indexes from its rows";
  if (reader.identity().mode != options_.mode) {
    return fmt::format("the save's shards were built in mode {}, this server runs mode {}: the retrievers rebuild "
                       "their indexes from its rows", reader.identity().mode, options_.mode);
  }
  if (saved->owned_kv_heads != client_->owned_kv_heads()) {
    return fmt::format("the save's shards were made by {} retrievers under another shard plan than this server's "
                       "{}: the retrievers rebuild their indexes from its rows",
                       saved->owned_kv_heads.size(), client_->retrievers());
  }
  return {};
}

void PipelineEngine::shutdown(std::chrono::milliseconds timeout) noexcept {
  if (!failure_.failed()) client_->shutdown(timeout);
}

}  // namespace ra::serve
