#pragma once
// The compute backend interface of the decoder. The CPU reference backend implements it now; the CUDA
// backend implements the same contract. A backend owns its KV cache; the decode loop only feeds tokens
// and reads logits.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/sample_uniform.h"
#include "common/wire_rows.h"
#include "gpu_worker/model/model.h"

namespace ra {

// Post-RoPE activations of one layer for a run of n consecutive tokens, as the backend computed them.
// Pointers are valid only during the callback.
struct QkvChunk {
  int64_t layer = 0;
  int64_t position = 0;        // position of the first token
  int64_t n = 0;               // tokens in this chunk
  const float* q = nullptr;    // [n][n_heads * head_dim] float32, post-RoPE
  const float* k = nullptr;    // [n][n_kv_heads * head_dim] float32, post-RoPE (null when k_rows is given)
  const float* v = nullptr;    // [n][n_kv_heads * head_dim] float32 (null when v_rows is given)
  // With BackendOptions::observe_kv_rows, from a backend that codes them itself (the CUDA backend, on
  // the GPU): K and V already in the wire's forms (common/wire_rows.h), [n][n_kv_heads] rows of
  // wire_row_bytes(rows_format.key or .value, head_dim) bytes; null otherwise (then k and v are given).
  const std::byte* k_rows = nullptr;
  const std::byte* v_rows = nullptr;
  KvWireFormat rows_format;    // the forms of k_rows and v_rows
};
using QkvObserver = std::function<void(const QkvChunk&)>;

// The remote half of a decode step's attention (DESIGN §3): the CPU retrievers' partial states over
// the offloaded positions. Per layer the backend calls begin() as soon as q is ready, computes its own
// partial over the static set while the retrievers work, then calls finish() for the remote partials
// and merges them into its own (gpu_worker/attention/merge_partials.h: a CPU and a CUDA implementation).
class RemoteAttention {
 public:
  virtual ~RemoteAttention() = default;
  // q: [n_heads][head_dim] float32, post-RoPE, of the token at `position`. When evict_position >= 0,
  // that position leaves the static set in this step and k, v: [n_kv_heads][head_dim] float32 are its
  // key (post-RoPE) and value: the remote side must hold it before it answers this step.
  virtual void begin(int64_t layer, int64_t position, const float* q, int64_t evict_position, const float* k,
                     const float* v) = 0;
  // Writes the remote partial state of every query head (DESIGN §4): o: [n_heads][head_dim] float32 and
  // lse: [n_heads] float32; a head with nothing offloaded gets the empty state (lse = −inf, o = 0).
  // Throws (e.g. transport::PeerError) when a retriever fails.
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

// The attention-aware graph's training lists, found by the backend during the prefill while each
// layer's keys are resident (issue 16 item 2; the CUDA backend with a static set): every training
// query's top keys, by inner product, among the offloaded positions. A backend that cannot ignores
// this (computes_train_lists() false) and the retrievers find the lists themselves.
struct TrainListOptions {
  std::vector<int64_t> positions;  // training positions, ascending (every query head trains at each)
  int64_t first = 0, end = 0;      // offloaded positions [first, end): a list's ids are rows of this block
  int width = 0;                   // ids per list; 0 = off
  // > 0: also each offloaded key's best key_query_width training queries of its kv group, by inner
  // product (GraphBuildParams::connect_query_lists: a key no list reached links into their lists).
  int key_query_width = 0;
  // Called on the prefill's thread once per layer, after that layer's qkv_observer chunks: lists:
  // [n_heads][positions.size()][width] int32, best first, -1 past the block's size; key_queries (null
  // when key_query_width is 0): [n_kv_heads][end - first][key_query_width] int32, ids of the group's
  // training rows in [group q head][positions.size()] order, best first. Valid in the call.
  std::function<void(int64_t layer, const int32_t* lists, const int32_t* key_queries)> on_layer;
};

struct BackendOptions {
  int64_t max_positions = 0;   // KV cache capacity in tokens; 0 = the model's max_position_embeddings
  int64_t prefill_chunk = 256; // CPU: tokens per prefill step: bounds activation and score memory
  int64_t cuda_prefill_chunk = 4096;  // CUDA: tokens per prefill GEMM (large enough to fill the GPU)
  int threads = 0;             // 0 = all cores
  QkvObserver qkv_observer;    // optional: sees every layer's q/k/v (ra dump-qkv, index build data)
  // Optional, with qkv_observer: the prefill's K and V as the retrievers take them (kBuild's forms), so
  // that a backend that can code them on its device hands QkvChunk::k_rows / v_rows to the observer
  // instead of float32 k and v (a quarter of the bytes off the GPU for int8). A backend that cannot
  // ignores it (the CPU backend: PrefillCapture codes the float32 rows itself, by the same rule). Every
  // row of a chunk is coded: one that int8 cannot code (inf or NaN) is an ra::Error naming the layer,
  // position and kv head.
  std::optional<KvWireFormat> observe_kv_rows;
  StaticSetOptions static_set; // attention modes other than full
  TrainListOptions train_lists; // optional, with a static set
};

class Backend {
 public:
  virtual ~Backend() = default;

  virtual std::string name() const = 0;
  virtual const ModelConfig& config() const = 0;
  // Whether the prefill calls BackendOptions::train_lists.on_layer (when it was given).
  virtual bool computes_train_lists() const { return false; }

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
  // Keeps the KV of positions [0, position) and forgets the rest, so that the next forward() runs at
  // `position` (0 <= position <= position()): how a prebuilt context is reused (gpu_worker/serve). With
  // full attention that is only the position. With a static set the window must come back to the
  // positions before `position`: a backend that keeps every position's KV (cpu) reads them again; one
  // that keeps only the window (cuda) restores them from its copy of the window at the base
  // (keep_base()) and from the live window, so it reaches only the positions can_truncate_to() names.
  // The caller returns the remote side to the offloaded set of `position` itself (the retrievers'
  // kRewind); after it, forward() decodes one token per call, as after a prefill. The default throws
  // ra::Error ("not supported by this backend"); so does a backend that cannot in its current mode, or
  // cannot reach `position` now.
  virtual void truncate(int64_t position);
  // Whether truncate() works in this backend's current mode.
  virtual bool can_truncate() const { return false; }
  // Whether truncate(position) works now. The default: can_truncate() and 0 <= position <= position().
  // Where it does not, an earlier position (the base) may: the caller truncates there and runs the
  // tokens between again.
  virtual bool can_truncate_to(int64_t position) const;
  // Remembers the static set as it is now, at position(), so that truncate() can come back here however
  // long decoding goes on: where a prebuilt context's base is kept. Forgotten by reset(), write_kv()
  // and a prefill. The default does nothing (a backend that keeps every position's KV needs no copy).
  virtual void keep_base() {}

  // Saved contexts (gpu_worker/serve/context_files.h). read_kv copies the cached keys (post-RoPE) and
  // values of positions [begin, end) out: k, v: [n_layers][n_kv_heads][end - begin][head_dim] float32.
  // write_kv writes such K/V into the cache at [begin, end) and sets position() to `end`: a context
  // saved from positions [0, N) loads as write_kv(0, N); with a static set, as the sinks then the
  // window (decode steps read no other position). Both throw ra::Error for positions outside the
  // cache; the defaults throw "not supported by this backend".
  virtual void read_kv(int64_t begin, int64_t end, std::span<float> k, std::span<float> v) const;
  virtual void write_kv(int64_t begin, int64_t end, std::span<const float> k, std::span<const float> v);

  // One decode step that also picks the next token: runs `token` at position() like forward(), then
  // returns the token sampled from its logits with `params` as the `step`-th draw (the Sampler of
  // gpu_worker/decode/sampler.h, same function on every backend). When `logits` is not empty it also
  // receives the logits. The CUDA backend samples on the GPU and copies back four bytes; the default
  // runs forward() and samples on the host.
  virtual int32_t decode_sample(int32_t token, const SamplingParams& params, uint64_t step, std::span<float> logits);

  // Benchmarks only (decode timing does not depend on the values): makes the cache hold random keys
  // and values for positions [0, position) and sets position(), as if a prompt that long had been
  // prefilled. Throws ra::Error when position exceeds max_positions().
  virtual void fill_cache_for_timing(int64_t position, uint64_t seed) = 0;
  // Benchmarks only: runs `steps` greedy decode steps back to back on the device, each feeding the
  // token it sampled into the next, and returns each step's milliseconds as the device measured them.
  // Empty when the backend cannot (the caller then times decode_sample() on the host).
  virtual std::vector<double> time_decode_steps(int steps);

  // The device memory a GPU backend allocated: its weights, and the most its process held at once
  // (weights, caches and every working buffer, prefill's included; the CUDA context and libraries'
  // own memory are not counted: nvidia-smi shows those on top). Empty for a host backend.
  struct DeviceMemoryUse {
    int64_t weights_bytes = 0;
    int64_t peak_bytes = 0;
  };
  virtual std::optional<DeviceMemoryUse> device_memory() const { return std::nullopt; }
};

// The float32 reference backend: threaded with OpenMP and OpenBLAS. `model` must outlive it.
std::unique_ptr<Backend> make_cpu_backend(const Model& model, const BackendOptions& options);

// Which backend runs the model: `cpu` (the reference), `cuda` (the GPU), or `auto` (CUDA when this
// build has it and a GPU is visible, else CPU).
enum class BackendKind { kAuto, kCpu, kCuda };
BackendKind parse_backend_kind(std::string_view name);  // throws ra::Error listing the names
std::string_view name(BackendKind kind);
// True when this build has the CUDA backend and a CUDA device is visible.
bool cuda_backend_available();
// The PCI bus id of the GPU the CUDA backend would use ("0000:18:00.0"); "" without one.
std::string gpu_pci_bus_id();
// auto resolved to cpu or cuda; cuda without a GPU (or in a CPU-only build) throws ra::Error saying why.
BackendKind resolve_backend_kind(BackendKind kind);
// The backend `kind` names (after resolve_backend_kind). `model` must outlive it.
std::unique_ptr<Backend> make_backend(BackendKind kind, const Model& model, const BackendOptions& options);

}  // namespace ra
