#include "gpu_worker/serve/inproc_engine.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <utility>

#include "common/error.h"
#include "gpu_worker/serve/saved_kv.h"

namespace ra::serve {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

}  // namespace

InprocEngine::InprocEngine(std::unique_ptr<Model> model, std::unique_ptr<Backend> backend,
                           const InprocEngineOptions& options)
    : model_(std::move(model)), backend_(std::move(backend)) {
  RA_ASSERT(model_ && backend_);
  prefill_piece_ = options.mode == "full" ? std::max<int64_t>(0, options.prefill_piece) : 0;
  threads_ = options.threads;
  backend_->reset();
  info_ = engine_info(*backend_, options.mode, /*has_retrieval=*/false);
  if (options.mode != "full") {
    // A static set: the backend could return to a position, but the rest of the prompt would then run
    // as decode steps over the sinks and the window only, not as the cold prefill runs it.
    info_.contexts_unsupported = fmt::format(
        "mode {} keeps only the sinks and the window, so a context's continuation cannot be prefilled as a cold "
        "prompt's is (use mode full, or `ra serve` with retrievers)", options.mode);
  }
  resident_.reserve(static_cast<size_t>(info_.max_positions));
  logits_.resize(static_cast<size_t>(info_.vocab_size));
}

GenerationStats InprocEngine::generate(const GenerationRequest& request, TokenSink& sink) {
  check_request(request, info_);
  if (failure_.failed()) throw EngineFailure(failure_.health().cause);
  if (threads_ > 0) omp_set_num_threads(threads_);
  try {
    return run(request, sink);
  } catch (const std::exception& e) {
    // The cache may be half-written: forget it, and report the engine as broken (a device error is sticky).
    resident_.clear();
    const std::string cause = fmt::format("the {} backend failed: {}", info_.backend, e.what());
    failure_.set(cause);
    throw EngineFailure(cause);
  }
}

int64_t InprocEngine::reusable(const GenerationRequest& r) const {
  if (r.reusable_prefix <= 0 || !info_.contexts_unsupported.empty()) return 0;
  // The last prompt token always runs: its logits give the first generated token.
  const int64_t keep = std::min<int64_t>(r.reusable_prefix, static_cast<int64_t>(r.prompt.size()) - 1);
  if (keep <= 0 || static_cast<int64_t>(resident_.size()) < r.reusable_prefix) return 0;
  return std::equal(r.prompt.begin(), r.prompt.begin() + r.reusable_prefix, resident_.begin()) ? keep : 0;
}

bool InprocEngine::prefill(std::span<const int32_t> tokens, int64_t begin, const std::atomic<bool>* cancel) {
  const auto n = static_cast<int64_t>(tokens.size());
  while (begin < n) {
    if (cancel != nullptr && cancel->load(std::memory_order_relaxed)) return false;
    const int64_t len = prefill_piece_ > 0 ? std::min(prefill_piece_, n - begin) : n - begin;
    const auto piece = tokens.subspan(static_cast<size_t>(begin), static_cast<size_t>(len));
    backend_->forward(piece, logits_);
    resident_.insert(resident_.end(), piece.begin(), piece.end());
    begin += len;
  }
  return true;
}

GenerationStats InprocEngine::run(const GenerationRequest& r, TokenSink& sink) {
  GenerationStats stats;
  stats.prompt_tokens = static_cast<int64_t>(r.prompt.size());
  stats.finish = FinishReason::kCancelled;
  if (r.cancel != nullptr && r.cancel->load(std::memory_order_relaxed)) return stats;

  const int64_t keep = reusable(r);
  if (keep > 0) {
    backend_->truncate(keep);
  } else {
    backend_->reset();
  }
  resident_.resize(static_cast<size_t>(keep));
  stats.reused_tokens = keep;

  const auto prefill_start = Clock::now();
  const bool done = prefill(r.prompt, keep, r.cancel);
  stats.prefill_seconds = seconds_since(prefill_start);
  if (!done) return stats;
  RA_ASSERT(static_cast<int64_t>(resident_.size()) == backend_->position());
  if (r.max_tokens == 0) {
    stats.finish = FinishReason::kLength;
    return stats;
  }
  decode_tokens(*backend_, r, logits_, sink, resident_, nullptr, stats);
  return stats;
}

ContextIdentity InprocEngine::identity() const { return context_identity(*model_, info_.mode); }

void InprocEngine::prefill_and_save(std::span<const int32_t> tokens, const std::string& dir) {
  RA_REQUIRE(info_.contexts_unsupported.empty(), "saving a context: {}", info_.contexts_unsupported);
  RA_REQUIRE(!tokens.empty() && static_cast<int64_t>(tokens.size()) <= info_.max_positions,
             "the document has {} tokens; the KV cache holds 1 to {}", tokens.size(), info_.max_positions);
  if (threads_ > 0) omp_set_num_threads(threads_);
  ContextWriter writer(dir);
  backend_->reset();
  resident_.clear();
  prefill(tokens, 0, nullptr);
  const KvRange every[1] = {{0, static_cast<int64_t>(tokens.size())}};
  save_worker_kv(writer, *backend_, every);
  save_logits(writer, logits_);
  writer.finish(identity(), tokens);
}

std::vector<int32_t> InprocEngine::load(const std::string& dir) {
  RA_REQUIRE(info_.contexts_unsupported.empty(), "loading a context: {}", info_.contexts_unsupported);
  const ContextReader reader(dir, identity());
  const auto n = static_cast<int64_t>(reader.tokens().size());
  RA_REQUIRE(n <= info_.max_positions, "{}: the saved context has {} tokens, more than the KV cache of {} positions",
             reader.path("manifest.json"), n, info_.max_positions);
  backend_->reset();
  resident_.clear();
  const KvRange every[1] = {{0, n}};
  load_worker_kv(reader, *backend_, every, fmt::format("{} tokens with full attention", n));
  resident_ = reader.tokens();
  return reader.tokens();
}

}  // namespace ra::serve
