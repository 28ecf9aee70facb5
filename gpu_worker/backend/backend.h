#pragma once
// The compute backend interface of the decoder. The CPU reference backend implements it now; the CUDA
// backend implements the same contract. A backend owns its KV cache; the decode loop only feeds tokens
// and reads logits.

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>

#include "gpu_worker/model/model.h"

namespace ra {

// Post-RoPE activations of one layer for a run of n consecutive tokens, as the backend computed them.
// Pointers are valid only during the callback.
struct QkvChunk {
  int64_t layer = 0;
  int64_t position = 0;        // position of the first token
  int64_t n = 0;               // tokens in this chunk
  const float* q = nullptr;    // [n][n_heads * head_dim] float32, post-RoPE
  const float* k = nullptr;    // [n][n_kv_heads * head_dim] float32, post-RoPE
  const float* v = nullptr;    // [n][n_kv_heads * head_dim] float32
};
using QkvObserver = std::function<void(const QkvChunk&)>;

// The remote half of a decode step's attention (DESIGN §3): the CPU retrievers' partial states over
// the offloaded positions. Per layer the backend calls begin() as soon as q is ready, computes its own
// partial over the static set while the retrievers work, and then calls finish() to merge.
class RemoteAttention {
 public:
  virtual ~RemoteAttention() = default;
  // q: [n_heads][head_dim] float32, post-RoPE, of the token at `position`. When evict_position >= 0,
  // that position leaves the static set in this step and k, v: [n_kv_heads][head_dim] float32 are its
  // key (post-RoPE) and value: the remote side must hold it before it answers this step.
  virtual void begin(int64_t layer, int64_t position, const float* q, int64_t evict_position, const float* k,
                     const float* v) = 0;
  // Merges the remote partials into the static ones, in place: o: [n_heads][head_dim] float32 and
  // lse: [n_heads] float32 (DESIGN §4). Throws (e.g. transport::PeerError) when a retriever fails.
  virtual void finish(int64_t layer, float* o, float* lse) = 0;
};

// Decode-time split of attention into a static set on the backend and an offloaded set (DESIGN §5).
// The prefill (the first forward() call) attends over everything. At a decode step for position p the
// static set is the sinks [0, S) and the window [max(S, p + 1 − W), p]; the offloaded set is
// [S, max(S, p + 1 − W)), and position p − W (when >= S) moves from the window to it in that step.
// Together they cover [0, p] exactly once at every step.
struct StaticSetOptions {
  bool enabled = false;        // false: full attention (mode full)
  int64_t sinks = 128;         // S
  int64_t window = 512;        // W, including the token being decoded
  RemoteAttention* remote = nullptr;  // the offloaded part; null = dropped (mode window)
};

struct BackendOptions {
  int64_t max_positions = 0;   // KV cache capacity in tokens; 0 = the model's max_position_embeddings
  int64_t prefill_chunk = 256; // tokens per prefill step: bounds activation and score memory
  int threads = 0;             // 0 = all cores
  QkvObserver qkv_observer;    // optional: sees every layer's q/k/v (ra dump-qkv, index build data)
  StaticSetOptions static_set; // attention modes other than full
};

class Backend {
 public:
  virtual ~Backend() = default;

  virtual std::string name() const = 0;
  virtual const ModelConfig& config() const = 0;

  // Runs `tokens` at positions [position(), position() + tokens.size()), appends their K/V to the
  // cache and writes the logits of the last token to `logits`: [vocab_size] float32.
  // Throws ra::Error if the tokens do not fit in max_positions() or an id is outside the vocabulary.
  virtual void forward(std::span<const int32_t> tokens, std::span<float> logits) = 0;

  // Number of tokens in the KV cache.
  virtual int64_t position() const = 0;
  // KV cache capacity in tokens.
  virtual int64_t max_positions() const = 0;
  // Empties the KV cache.
  virtual void reset() = 0;
};

// The float32 reference backend: threaded with OpenMP and OpenBLAS. `model` must outlive it.
std::unique_ptr<Backend> make_cpu_backend(const Model& model, const BackendOptions& options);

}  // namespace ra
