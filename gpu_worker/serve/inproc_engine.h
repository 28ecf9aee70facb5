#pragma once
// The Engine over a Backend in this process (modes full and window; no retrievers). It remembers which
// tokens the backend's KV cache holds, so a request whose reusable_prefix is still there prefills only
// the rest (Backend::truncate); any other request prefills from position 0.

#include <atomic>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "gpu_worker/backend/backend.h"
#include "gpu_worker/model/model.h"
#include "gpu_worker/serve/context_files.h"
#include "gpu_worker/serve/engine.h"
#include "gpu_worker/serve/engine_common.h"

namespace ra::serve {

struct InprocEngineOptions {
  std::string mode = "full";     // what the backend's static set does, for info(): "full" or "window"
  // Prompt tokens per forward() call, so that a cancel is seen between them. A multiple of the backends'
  // prefill chunks (256 on the CPU, 4096 on CUDA), so the numbers are those of one call. 0 = the whole
  // prompt in one call (always so with a static set, whose prefill must be one call).
  int64_t prefill_piece = 4096;
  // OpenMP threads of the thread that runs generate() (the server's decode thread): an OpenMP thread
  // count is per thread, and the backend set it only on the thread that made it. 0: leave it.
  int threads = 0;
};

class InprocEngine final : public Engine {
 public:
  // `backend` runs `*model`; the engine keeps both.
  InprocEngine(std::unique_ptr<Model> model, std::unique_ptr<Backend> backend, const InprocEngineOptions& options);

  const EngineInfo& info() const override { return info_; }
  EngineHealth health() const override { return failure_.health(); }
  GenerationStats generate(const GenerationRequest& request, TokenSink& sink) override;

  // Saved contexts (context_files.h), mode full only: the KV of every position. Before the server runs.
  ContextIdentity identity() const;
  // `ra prefill --save DIR`: prefills `tokens` and writes the context to `dir`.
  void prefill_and_save(std::span<const int32_t> tokens, const std::string& dir);
  // `ra serve --load DIR`: restores a saved context into the cache; returns its tokens. Throws ra::Error
  // naming the file and field for a corrupt or mismatched save.
  std::vector<int32_t> load(const std::string& dir);

 private:
  GenerationStats run(const GenerationRequest& request, TokenSink& sink);
  int64_t reusable(const GenerationRequest& request) const;  // prompt tokens whose KV the cache holds
  // Runs tokens[begin, end) in pieces of prefill_piece_ (checking `cancel` between them; null: never),
  // appending them to resident_; logits_ gets the last one's. Returns false when cancelled.
  bool prefill(std::span<const int32_t> tokens, int64_t begin, const std::atomic<bool>* cancel);

  std::unique_ptr<Model> model_;
  std::unique_ptr<Backend> backend_;  // declared after model_: destroyed before it
  EngineInfo info_;
  int64_t prefill_piece_ = 0;
  int threads_ = 0;
  std::vector<int32_t> resident_;  // the tokens whose KV the cache holds, in order: backend_->position() of them
  std::vector<float> logits_;      // [vocab] float32: the prefill's last token
  EngineFailureState failure_;
};

}  // namespace ra::serve
