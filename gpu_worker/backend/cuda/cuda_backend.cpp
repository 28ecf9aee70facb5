// The CUDA backend. See cuda_backend.h for the contract; the shapes of every buffer are next to it below.
//
// The per-token path (decode_step) does no allocation: every buffer is made in the constructor. A decode
// step without a remote part is captured once as a CUDA graph (after one eager step has warmed every
// kernel up) and replayed for each later token; its inputs (position, token, sampling knobs, draw index)
// live in one device struct that a single host-to-device copy refreshes per step.

#include "gpu_worker/backend/cuda/cuda_backend.h"

#include <algorithm>
#include <cstring>
#include <optional>
#include <vector>

#include "common/error.h"
#include "gpu_worker/attention/merge_partials_cuda.h"
#include "gpu_worker/backend/cuda/cuda_check.h"
#include "gpu_worker/backend/cuda/cuda_weights.h"
#include "gpu_worker/backend/cuda/decode_attention.h"
#include "gpu_worker/backend/cuda/device_memory.h"
#include "gpu_worker/backend/cuda/gemm.h"
#include "gpu_worker/backend/cuda/gemv.h"
#include "gpu_worker/backend/cuda/ops.h"
#include "gpu_worker/backend/cuda/prefill_attention.h"
#include "gpu_worker/backend/cuda/qkv_gather.h"
#include "gpu_worker/backend/cuda/sampling.h"
#include "gpu_worker/backend/cuda/static_set.h"
#include "gpu_worker/backend/cuda/train_lists.h"
#include "gpu_worker/model/rope.h"

namespace ra {

bool cuda_device_visible() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

std::string cuda_device_problem() {
  int n = 0;
  const cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) return std::string("cudaGetDeviceCount: ") + cudaGetErrorString(err);
  return n == 0 ? "no device" : "";
}

std::string cuda_pci_bus_id() {
  int device = 0;
  char id[32] = {};
  if (cudaGetDevice(&device) != cudaSuccess || cudaDeviceGetPCIBusId(id, sizeof id, device) != cudaSuccess) return {};
  return id;
}

namespace cuda {
namespace {

// The device-side inputs of one decode step, refreshed by one host-to-device copy per step.
struct DecodeIo {
  int64_t position = 0;   // of the token being decoded
  uint64_t step = 0;      // sampling draw index (sample_uniform)
  SamplingParams params;  // temperature, top_p, seed
  int32_t token = 0;      // in: the token to run; out (after the step): the sampled next token
  int32_t pad = 0;
};

class Stream {
 public:
  Stream() { RA_CUDA_CHECK(cudaStreamCreateWithFlags(&s_, cudaStreamNonBlocking)); }
  ~Stream() { cudaStreamDestroy(s_); }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  cudaStream_t get() const { return s_; }

 private:
  cudaStream_t s_ = nullptr;
};

class Event {
 public:
  Event() { RA_CUDA_CHECK(cudaEventCreateWithFlags(&e_, cudaEventDisableTiming)); }
  ~Event() { cudaEventDestroy(e_); }
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  cudaEvent_t get() const { return e_; }

 private:
  cudaEvent_t e_ = nullptr;
};

// A captured decode step, replayed per token.
class Graph {
 public:
  Graph() = default;
  ~Graph() {
    if (exec_) cudaGraphExecDestroy(exec_);
    if (graph_) cudaGraphDestroy(graph_);
  }
  Graph(const Graph&) = delete;
  Graph& operator=(const Graph&) = delete;
  template <typename F>
  void capture(cudaStream_t s, F&& enqueue) {
    RA_CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
    try {
      enqueue();
    } catch (...) {
      cudaGraph_t broken = nullptr;
      cudaStreamEndCapture(s, &broken);
      if (broken) cudaGraphDestroy(broken);
      throw;
    }
    RA_CUDA_CHECK(cudaStreamEndCapture(s, &graph_));
    RA_CUDA_CHECK(cudaGraphInstantiate(&exec_, graph_, 0));
  }
  bool ready() const { return exec_ != nullptr; }
  void launch(cudaStream_t s) const { RA_CUDA_CHECK(cudaGraphLaunch(exec_, s)); }

 private:
  cudaGraph_t graph_ = nullptr;
  cudaGraphExec_t exec_ = nullptr;
};

int sm_count() {
  int device = 0, count = 0;
  RA_CUDA_CHECK(cudaGetDevice(&device));
  RA_CUDA_CHECK(cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device));
  return count;
}

// Buffers of one prefill call, sized by its token count and freed when it returns: the decode path
// keeps only what it needs.
// Synchronises its streams when it goes out of scope (errors included): work still queued on them may
// read or write buffers freed right after.
struct StreamsDrained {
  cudaStream_t a, b;
  ~StreamsDrained() {
    cudaStreamSynchronize(a);
    cudaStreamSynchronize(b);
  }
};

// Rows per piece of the prefill's MLP: its float32 gate/up activations, [rows][2 intermediate], are
// 112 MiB at Llama-3-8B's 14,336 (a whole 4,096-token chunk's would be 448 MiB), and 1,024 rows still
// keep the GEMMs on the tensor cores' full rate.
constexpr int64_t kMlpRows = 1024;

template <typename T>
struct PrefillBuffers {
  DeviceBuffer<int32_t> tokens;  // [n]
  // The residual stream of every prompt token, [n][hidden]: on the device, or (a static set's prefill
  // over more than one chunk) in pinned host memory, a chunk at a time through two device slots
  // (ResidualStream below), so that the GPU holds no [n][hidden] buffer whatever the prompt's length.
  DeviceBuffer<float> x;
  PinnedBuffer<float> x_host;
  DeviceBuffer<float> x_slots;   // [2][chunk][hidden]
  DeviceBuffer<T> xn;            // [chunk][hidden] normalised rows
  DeviceBuffer<float> qkv;       // [chunk][(n_heads + 2 n_kv_heads) head_dim]
  DeviceBuffer<T> q;             // [chunk][n_heads][head_dim] post-RoPE
  DeviceBuffer<T> attn;          // [chunk][n_heads * head_dim]
  DeviceBuffer<float> gate_up;   // [mlp_rows][2 intermediate], interleaved
  DeviceBuffer<T> act;           // [mlp_rows][intermediate]
  DeviceBuffer<T> k_scratch;     // static set only: [n_kv_heads][n][head_dim] one layer's prompt keys
  DeviceBuffer<T> v_scratch;     // static set only: values
  // QkvObserver staging: device float32 rows, then pinned host copies.
  DeviceBuffer<float> obs_q, obs_k, obs_v;  // [chunk][q_dim], [chunk][kv_dim] x 2 (without observe_kv_rows)
  PinnedBuffer<float> obs_q_h, obs_k_h, obs_v_h;
  // With BackendOptions::observe_kv_rows: K and V coded in the wire's forms instead, [chunk][n_kv_heads]
  // rows of wire_row_bytes each, and the coder's error words (first bad row of K, of V; kNoBadRow).
  DeviceBuffer<std::byte> obs_k_rows, obs_v_rows;
  PinnedBuffer<std::byte> obs_k_rows_h, obs_v_rows_h;
  DeviceBuffer<unsigned long long> obs_bad;  // [2]
  PinnedBuffer<unsigned long long> obs_bad_h;
  // Training lists (TrainListOptions): positions [n_train] int64; the training queries of every head
  // [n_heads][n_train][head_dim]; scores of a block of the group's training rows against the kv head's
  // offloaded keys [block][offloaded]; the lists [n_heads][n_train][width] int32, and their host copy.
  DeviceBuffer<int64_t> train_positions;
  DeviceBuffer<T> train_q;
  DeviceBuffer<float> train_scores;
  DeviceBuffer<int32_t> lists;
  PinnedBuffer<int32_t> lists_h;
  int64_t score_rows = 0;  // rows of train_scores
  // With key_query_width: each offloaded key's best training rows of its group [n_kv_heads][offloaded]
  // [key_query_width] int32 (scored in train_scores too, key_rows keys at a time), and their host copy.
  DeviceBuffer<int32_t> key_queries;
  PinnedBuffer<int32_t> key_queries_h;
  int64_t key_rows = 0;
};

template <typename T>
class CudaBackend final : public Backend {
 public:
  CudaBackend(const ModelConfig& config, std::string source, std::unique_ptr<Stream> stream,
              DeviceWeights<T> weights, const BackendOptions& options)
      : config_(config),
        source_(std::move(source)),
        stream_(std::move(stream)),
        w_(std::move(weights)),
        chunk_(std::max<int64_t>(1, options.cuda_prefill_chunk)),
        qkv_observer_(options.qkv_observer),
        observe_kv_rows_(options.observe_kv_rows),
        static_set_(options.static_set),
        train_lists_(options.train_lists) {
    const ModelConfig& c = config_;
    capacity_ = options.max_positions > 0 ? options.max_positions : c.max_position_embeddings;
    RA_REQUIRE(capacity_ <= c.max_position_embeddings,
               "{}: a KV cache of {} positions exceeds max_position_embeddings ({})", source_, capacity_,
               c.max_position_embeddings);
    RA_REQUIRE(!static_set_.enabled || (static_set_.sinks >= 0 && static_set_.window >= 1),
               "static set needs sinks >= 0 and window >= 1 (got {} and {})", static_set_.sinks, static_set_.window);
    RA_REQUIRE(c.head_dim % 2 == 0, "{}: head_dim {} is odd (RoPE rotates pairs)", source_, c.head_dim);
    if (train_lists_.width > 0) {
      const TrainListOptions& t = train_lists_;
      RA_REQUIRE(0 <= t.first && t.first <= t.end, "training lists over positions [{}, {})", t.first, t.end);
      RA_REQUIRE(std::is_sorted(t.positions.begin(), t.positions.end()) &&
                     (t.positions.empty() || t.positions.front() >= 0),
                 "training positions must be ascending and non-negative");
    }
    sinks_ = static_set_.enabled ? static_set_.sinks : 0;
    window_ = static_set_.enabled ? static_set_.window : 0;
    slots_ = static_set_.enabled ? sinks_ + window_ : capacity_;  // the ring is whole even when capacity is less

    const auto kv_elems = static_cast<size_t>(c.n_kv_heads * slots_ * c.head_dim);
    for (int64_t l = 0; l < c.n_layers; ++l) {
      k_cache_.emplace_back(kv_elems, "KV cache (keys)");
      v_cache_.emplace_back(kv_elems, "KV cache (values)");
    }
    const std::vector<float> inv = rope_inverse_frequencies(c);
    inv_freq_ = DeviceBuffer<float>(inv.size(), "RoPE frequencies");
    cos_sin_ = DeviceBuffer<float>(2 * inv.size(), "RoPE rotation of the decode position");
    RA_CUDA_CHECK(cudaMemcpy(inv_freq_.get(), inv.data(), inv.size() * sizeof(float), cudaMemcpyHostToDevice));

    const auto D = static_cast<size_t>(c.hidden_size);
    x_ = DeviceBuffer<float>(D, "decode residual");
    qkv_ = DeviceBuffer<float>(static_cast<size_t>(c.q_dim() + 2 * c.kv_dim()), "decode qkv");
    q_ = DeviceBuffer<float>(static_cast<size_t>(c.q_dim()), "decode q");
    o_ = DeviceBuffer<float>(static_cast<size_t>(c.q_dim()), "decode attention output");
    lse_ = DeviceBuffer<float>(static_cast<size_t>(c.n_heads), "decode lse");
    act_ = DeviceBuffer<float>(static_cast<size_t>(c.intermediate_size), "decode SwiGLU");
    logits_ = DeviceBuffer<float>(static_cast<size_t>(c.vocab_size), "logits");
    evicted_k_ = DeviceBuffer<float>(static_cast<size_t>(c.kv_dim()), "evicted key");
    evicted_v_ = DeviceBuffer<float>(static_cast<size_t>(c.kv_dim()), "evicted value");
    io_ = DeviceBuffer<DecodeIo>(1, "decode inputs");
    io_h_ = PinnedBuffer<DecodeIo>(1, "decode inputs");
    next_token_h_ = PinnedBuffer<int32_t>(1, "sampled token");
    logits_h_ = PinnedBuffer<float>(static_cast<size_t>(c.vocab_size), "logits");

    attention_plan_ = plan_decode_attention(static_cast<int>(c.n_heads), static_cast<int>(c.n_kv_heads),
                                            static_cast<int>(c.head_dim), slots_, dtype_of<T>(), sm_count());
    attention_workspace_ = DeviceBuffer<std::byte>(std::max<size_t>(1, attention_plan_.workspace_bytes),
                                                   "decode attention workspace");
    if (static_set_.remote != nullptr) {
      remote_o_ = DeviceBuffer<float>(static_cast<size_t>(c.q_dim()), "remote partial o");
      remote_lse_ = DeviceBuffer<float>(static_cast<size_t>(c.n_heads), "remote partial lse");
      q_h_ = PinnedBuffer<float>(static_cast<size_t>(c.q_dim()), "q for the retrievers");
      evicted_k_h_ = PinnedBuffer<float>(static_cast<size_t>(c.kv_dim()), "evicted key");
      evicted_v_h_ = PinnedBuffer<float>(static_cast<size_t>(c.kv_dim()), "evicted value");
      remote_o_h_ = PinnedBuffer<float>(static_cast<size_t>(c.q_dim()), "remote partial o");
      remote_lse_h_ = PinnedBuffer<float>(static_cast<size_t>(c.n_heads), "remote partial lse");
    }
    RA_CUDA_CHECK(cudaDeviceSynchronize());
  }

  ~CudaBackend() override { cudaStreamSynchronize(stream_->get()); }

  std::string name() const override { return "cuda"; }
  std::optional<DeviceMemoryUse> device_memory() const override {
    return DeviceMemoryUse{w_.bytes(), device_memory_stats().peak_bytes};
  }
  bool computes_train_lists() const override { return lists_enabled(); }
  const ModelConfig& config() const override { return config_; }
  int64_t position() const override { return position_; }
  int64_t max_positions() const override { return capacity_; }
  void reset() override {
    position_ = 0;
    base_ = -1;
  }

  // Full attention: the cache keeps every position, so returning to `position` is only the count (the
  // slots beyond are overwritten by the next forward). A static set restores the window of `position`:
  // its positions before the base from the copy keep_base() made, the later ones from the live ring.
  void truncate(int64_t position) override {
    RA_REQUIRE(position >= 0 && position <= position_, "truncate({}): the KV cache holds {} positions", position,
               position_);
    if (static_set_.enabled && position != position_) {
      RA_REQUIRE(can_truncate_to(position),
                 "returning to position {} of the KV cache: with a static set (sinks {} + window {}) the cuda backend "
                 "returns only to its kept base ({}) or to a later position whose window it still holds (decoded "
                 "up to {})",
                 position, sinks_, window_, base_ < 0 ? std::string("none") : std::to_string(base_), position_);
      restore_window(position);
    }
    position_ = position;
  }
  bool can_truncate() const override { return true; }

  bool can_truncate_to(int64_t position) const override {
    if (!static_set_.enabled) return 0 <= position && position <= position_;
    return window_reachable(position, position_, base_, sinks_, window_);
  }

  void keep_base() override {
    if (!static_set_.enabled) return;
    cudaStream_t s = stream_->get();
    for (size_t l = 0; l < k_cache_.size(); ++l) {
      if (base_k_.size() <= l) {
        base_k_.emplace_back(k_cache_[l].size(), "KV window kept at the base (keys)");
        base_v_.emplace_back(v_cache_[l].size(), "KV window kept at the base (values)");
      }
      RA_CUDA_CHECK(cudaMemcpyAsync(base_k_[l].get(), k_cache_[l].get(), k_cache_[l].bytes(),
                                    cudaMemcpyDeviceToDevice, s));
      RA_CUDA_CHECK(cudaMemcpyAsync(base_v_[l].get(), v_cache_[l].get(), v_cache_[l].bytes(),
                                    cudaMemcpyDeviceToDevice, s));
    }
    RA_CUDA_CHECK(cudaStreamSynchronize(s));
    base_ = position_;
  }

  void read_kv(int64_t begin, int64_t end, std::span<float> k, std::span<float> v) const override {
    RA_REQUIRE(0 <= begin && begin <= end && end <= position_,
               "read_kv: positions [{}, {}) are not all in the cache of {} positions", begin, end, position_);
    if (window_ > 0) {  // the sinks and the live window only
      const int64_t gone = std::max(begin, sinks_);
      RA_REQUIRE(gone >= end || gone >= position_ - window_,
                 "read_kv: positions [{}, {}) have left the static set (sinks {} + window {} at position {})", begin,
                 end, sinks_, window_, position_);
    }
    check_kv_spans(begin, end, k.size(), v.size(), "read_kv");
    copy_kv(begin, end, k.data(), v.data(), nullptr, nullptr);
  }

  void write_kv(int64_t begin, int64_t end, std::span<const float> k, std::span<const float> v) override {
    RA_REQUIRE(0 <= begin && begin <= end && end <= capacity_,
               "write_kv: positions [{}, {}) exceed the cache of {} positions", begin, end, capacity_);
    RA_REQUIRE(window_ == 0 || end <= sinks_ || (begin >= sinks_ && end - begin <= window_),
               "write_kv: positions [{}, {}) are neither within the sinks ({}) nor one window ({}) of positions",
               begin, end, sinks_, window_);
    check_kv_spans(begin, end, k.size(), v.size(), "write_kv");
    copy_kv(begin, end, nullptr, nullptr, k.data(), v.data());
    position_ = end;
    base_ = -1;
  }

  void forward(std::span<const int32_t> tokens, std::span<float> logits) override {
    check_tokens(tokens);
    RA_REQUIRE(static_cast<int64_t>(logits.size()) == config_.vocab_size, "logits span has {} entries, vocab is {}",
               logits.size(), config_.vocab_size);
    if (tokens.size() > 1 || position_ == 0) {
      prefill(tokens);
      copy_logits_to(logits);
    } else {
      decode(tokens[0], SamplingParams{}, 0, logits);
    }
  }

  int32_t decode_sample(int32_t token, const SamplingParams& params, uint64_t step, std::span<float> logits) override {
    const int32_t one[1] = {token};
    check_tokens(one);
    RA_REQUIRE(position_ > 0, "decode_sample() needs a prefilled prompt (position 0)");
    RA_REQUIRE(logits.empty() || static_cast<int64_t>(logits.size()) == config_.vocab_size,
               "logits span has {} entries, vocab is {}", logits.size(), config_.vocab_size);
    return decode(token, params, step, logits);
  }

  void fill_cache_for_timing(int64_t position, uint64_t seed) override {
    RA_REQUIRE(position >= 0 && position <= capacity_, "fill_cache_for_timing: position {} outside [0, {}]", position,
               capacity_);
    for (size_t l = 0; l < k_cache_.size(); ++l) {
      RA_CUDA_CHECK(fill_random<T>(k_cache_[l].get(), static_cast<int64_t>(k_cache_[l].size()), 1.0f, seed + 2 * l,
                                   stream_->get()));
      RA_CUDA_CHECK(fill_random<T>(v_cache_[l].get(), static_cast<int64_t>(v_cache_[l].size()), 1.0f,
                                   seed + 2 * l + 1, stream_->get()));
    }
    RA_CUDA_CHECK(cudaStreamSynchronize(stream_->get()));
    position_ = position;
    base_ = -1;
  }

  std::vector<double> time_decode_steps(int steps) override {
    RA_REQUIRE(static_set_.remote == nullptr, "device-timed decode needs a step without a remote part");
    RA_REQUIRE(position_ + steps + 1 <= capacity_, "{} timed steps from position {} exceed the capacity {}", steps,
               position_, capacity_);
    cudaStream_t s = stream_->get();
    stage_io(0, SamplingParams{}, 0);
    if (!graph_.ready()) {  // warm up eagerly, then capture (same as decode())
      enqueue_decode_step();
      RA_CUDA_CHECK(cudaMemcpyAsync(io_.get(), io_h_.get(), sizeof(DecodeIo), cudaMemcpyHostToDevice, s));
      graph_.capture(s, [&] { enqueue_decode_step(); });
    }
    std::vector<cudaEvent_t> events(static_cast<size_t>(steps) + 1);
    for (auto& e : events) RA_CUDA_CHECK(cudaEventCreate(&e));
    RA_CUDA_CHECK(cudaEventRecord(events[0], s));
    for (int i = 0; i < steps; ++i) {
      graph_.launch(s);  // the graph advances the position and feeds its sampled token to the next step
      RA_CUDA_CHECK(cudaEventRecord(events[static_cast<size_t>(i) + 1], s));
    }
    RA_CUDA_CHECK(cudaStreamSynchronize(s));
    std::vector<double> ms(static_cast<size_t>(steps));
    for (int i = 0; i < steps; ++i) {
      float t = 0;
      RA_CUDA_CHECK(cudaEventElapsedTime(&t, events[static_cast<size_t>(i)], events[static_cast<size_t>(i) + 1]));
      ms[static_cast<size_t>(i)] = t;
    }
    for (auto& e : events) cudaEventDestroy(e);
    position_ += steps;
    return ms;
  }

 private:
  const ModelConfig& c() const { return config_; }

  void check_tokens(std::span<const int32_t> tokens) const {
    RA_REQUIRE(!tokens.empty(), "forward() needs at least one token");
    RA_REQUIRE(position_ + static_cast<int64_t>(tokens.size()) <= capacity_,
               "{} tokens at position {} exceed the KV cache capacity of {} positions", tokens.size(), position_,
               capacity_);
    for (int32_t t : tokens) {
      RA_REQUIRE(t >= 0 && t < config_.vocab_size, "token id {} is outside the vocabulary [0, {})", t,
                 config_.vocab_size);
    }
    RA_REQUIRE(!static_set_.enabled || position_ == 0 || tokens.size() == 1,
               "with a static set the backend decodes one token per step after the prefill (got {} tokens at "
               "position {})",
               tokens.size(), position_);
  }

  void check_kv_spans(int64_t begin, int64_t end, size_t k_size, size_t v_size, const char* what) const {
    const auto want = static_cast<size_t>(c().n_layers * c().n_kv_heads * (end - begin) * c().head_dim);
    RA_REQUIRE(k_size == want && v_size == want, "{}: k and v need {} floats each for positions [{}, {}), got {} and {}",
               what, want, begin, end, k_size, v_size);
  }

  // Positions [begin, end) of every layer's cache to float32 rows (k_out, v_out) or from them (k_in, v_in):
  // [n_layers][n_kv_heads][end - begin][head_dim]. Saving and loading contexts only: synchronous.
  void copy_kv(int64_t begin, int64_t end, float* k_out, float* v_out, const float* k_in, const float* v_in) const {
    const ModelConfig& m = c();
    const int64_t n = end - begin, hd = m.head_dim, heads = m.n_kv_heads;
    if (n == 0) return;
    const size_t pitch = static_cast<size_t>(slots_ * hd) * sizeof(T);  // one kv head's slots
    std::vector<T> stage(static_cast<size_t>(heads * n * hd));          // [n_kv_heads][n][head_dim]
    for (int64_t l = 0; l < m.n_layers; ++l) {
      for (int side = 0; side < 2; ++side) {
        T* cache = (side == 0 ? k_cache_ : v_cache_)[static_cast<size_t>(l)].get();
        float* out = side == 0 ? k_out : v_out;
        const float* in = side == 0 ? k_in : v_in;
        const size_t layer_at = static_cast<size_t>(l * heads * n * hd);
        if (in != nullptr) {
          for (size_t i = 0; i < stage.size(); ++i) stage[i] = from_float<T>(in[layer_at + i]);
        }
        for_each_slot_run(begin, end, sinks_, window_, [&](int64_t p, int64_t slot, int64_t count) {
          T* host = stage.data() + (p - begin) * hd;
          T* device = cache + slot * hd;
          const size_t width = static_cast<size_t>(count * hd) * sizeof(T);
          const size_t host_pitch = static_cast<size_t>(n * hd) * sizeof(T);
          if (in != nullptr) {
            RA_CUDA_CHECK(cudaMemcpy2D(device, pitch, host, host_pitch, width, static_cast<size_t>(heads),
                                       cudaMemcpyHostToDevice));
          } else {
            RA_CUDA_CHECK(cudaMemcpy2D(host, host_pitch, device, pitch, width, static_cast<size_t>(heads),
                                       cudaMemcpyDeviceToHost));
          }
        });
        if (out != nullptr) {
          for (size_t i = 0; i < stage.size(); ++i) out[layer_at + i] = to_float(stage[i]);
        }
      }
    }
  }

  // The window of `position` (can_truncate_to): its positions before the base back from the kept copy.
  void restore_window(int64_t position) {
    const ModelConfig& m = c();
    cudaStream_t s = stream_->get();
    const int64_t from = std::max(sinks_, position - window_), to = std::min(position, base_);
    const size_t pitch = static_cast<size_t>(slots_ * m.head_dim) * sizeof(T);
    for_each_slot_run(from, to, sinks_, window_, [&](int64_t, int64_t slot, int64_t count) {
      const size_t at = static_cast<size_t>(slot * m.head_dim);
      const size_t width = static_cast<size_t>(count * m.head_dim) * sizeof(T);
      for (size_t l = 0; l < k_cache_.size(); ++l) {
        RA_CUDA_CHECK(cudaMemcpy2DAsync(k_cache_[l].get() + at, pitch, base_k_[l].get() + at, pitch, width,
                                        static_cast<size_t>(m.n_kv_heads), cudaMemcpyDeviceToDevice, s));
        RA_CUDA_CHECK(cudaMemcpy2DAsync(v_cache_[l].get() + at, pitch, base_v_[l].get() + at, pitch, width,
                                        static_cast<size_t>(m.n_kv_heads), cudaMemcpyDeviceToDevice, s));
      }
    });
    RA_CUDA_CHECK(cudaStreamSynchronize(s));
  }

  void copy_logits_to(std::span<float> logits) {
    cudaStream_t s = stream_->get();
    RA_CUDA_CHECK(cudaMemcpyAsync(logits_h_.get(), logits_.get(), logits_.bytes(), cudaMemcpyDeviceToHost, s));
    RA_CUDA_CHECK(cudaStreamSynchronize(s));
    std::memcpy(logits.data(), logits_h_.get(), logits_.bytes());
  }

  // ---------------------------------------------------------------------------------------------
  // Prefill: layer by layer over the whole call, chunk_ tokens per GEMM.
  // ---------------------------------------------------------------------------------------------

  void prefill(std::span<const int32_t> tokens) {
    const ModelConfig& m = c();
    cudaStream_t s = stream_->get();
    const int64_t n = static_cast<int64_t>(tokens.size());
    const int64_t p0 = position_;
    const int64_t chunk = std::min(chunk_, n);
    const int64_t mlp_rows = std::min<int64_t>(chunk, kMlpRows);
    const auto D = static_cast<size_t>(m.hidden_size);
    const int64_t qkv_rows = m.q_dim() + 2 * m.kv_dim();
    const auto I = static_cast<size_t>(m.intermediate_size);
    const bool scratch = static_set_.enabled;  // the prompt's K/V go to a one-layer scratch first
    RA_ASSERT(!scratch || p0 == 0);
    const int64_t chunks = (n + chunk - 1) / chunk;
    // An offloaded mode's prefill keeps the residual stream on the host (the GPU's memory stays within
    // the weights and a bounded working set); full attention holds the whole KV cache anyway.
    const bool host_residual = scratch && chunks > 1;

    PrefillBuffers<T> b;
    const auto cn = static_cast<size_t>(chunk);
    b.tokens = DeviceBuffer<int32_t>(static_cast<size_t>(n), "prefill tokens");
    if (host_residual) {
      b.x_host = PinnedBuffer<float>(static_cast<size_t>(n) * D, "prefill residual stream (host)");
      b.x_slots = DeviceBuffer<float>(2 * cn * D, "prefill residual chunks");
    } else {
      b.x = DeviceBuffer<float>(static_cast<size_t>(n) * D, "prefill residual stream");
    }
    b.xn = DeviceBuffer<T>(cn * D, "prefill normalised rows");
    b.qkv = DeviceBuffer<float>(cn * static_cast<size_t>(qkv_rows), "prefill qkv");
    b.q = DeviceBuffer<T>(cn * static_cast<size_t>(m.q_dim()), "prefill q");
    b.attn = DeviceBuffer<T>(cn * static_cast<size_t>(m.q_dim()), "prefill attention output");
    b.gate_up = DeviceBuffer<float>(static_cast<size_t>(mlp_rows) * 2 * I, "prefill gate/up");
    b.act = DeviceBuffer<T>(static_cast<size_t>(mlp_rows) * I, "prefill SwiGLU");
    if (scratch) {
      const auto kv = static_cast<size_t>(m.n_kv_heads * n * m.head_dim);
      b.k_scratch = DeviceBuffer<T>(kv, "prefill keys of one layer");
      b.v_scratch = DeviceBuffer<T>(kv, "prefill values of one layer");
    }
    if (qkv_observer_) {
      b.obs_q = DeviceBuffer<float>(cn * static_cast<size_t>(m.q_dim()), "observed q");
      b.obs_q_h = PinnedBuffer<float>(b.obs_q.size(), "observed q");
      if (observe_kv_rows_) {
        const auto rows = cn * static_cast<size_t>(m.n_kv_heads);
        b.obs_k_rows = DeviceBuffer<std::byte>(rows * wire_row_bytes(observe_kv_rows_->key, m.head_dim), "coded k");
        b.obs_v_rows = DeviceBuffer<std::byte>(rows * wire_row_bytes(observe_kv_rows_->value, m.head_dim), "coded v");
        b.obs_k_rows_h = PinnedBuffer<std::byte>(b.obs_k_rows.size(), "coded k");
        b.obs_v_rows_h = PinnedBuffer<std::byte>(b.obs_v_rows.size(), "coded v");
        b.obs_bad = DeviceBuffer<unsigned long long>(2, "coded rows' errors");
        b.obs_bad_h = PinnedBuffer<unsigned long long>(2, "coded rows' errors");
      } else {
        b.obs_k = DeviceBuffer<float>(cn * static_cast<size_t>(m.kv_dim()), "observed k");
        b.obs_v = DeviceBuffer<float>(cn * static_cast<size_t>(m.kv_dim()), "observed v");
        b.obs_k_h = PinnedBuffer<float>(b.obs_k.size(), "observed k");
        b.obs_v_h = PinnedBuffer<float>(b.obs_v.size(), "observed v");
      }
    }

    const bool lists = scratch && lists_enabled();
    if (lists) allocate_train_lists(b, n);
    // Whatever ends this call, b's buffers are freed only after both streams are done with them.
    const StreamsDrained drained{s, copy_stream_.get()};

    RA_CUDA_CHECK(cudaMemcpyAsync(b.tokens.get(), tokens.data(), tokens.size_bytes(), cudaMemcpyHostToDevice, s));
    if (!host_residual) {
      RA_CUDA_CHECK(embed_rows<T>(b.tokens.get(), w_.embed.get(), b.x.get(), static_cast<int>(n),
                                  static_cast<int>(m.hidden_size), s));
    }
    // With the residual on the host, chunk i (of every layer's, in order) lives in slot i % 2 while it
    // computes; the copy stream loads chunk i + 1 into the other slot meanwhile and stores chunk i back
    // after it. Layer 0's chunks are embedded in their slots instead of loaded.
    const int64_t total = m.n_layers * chunks;
    cudaStream_t cs = copy_stream_.get();
    auto slot_of = [&](int64_t i) { return b.x_slots.get() + static_cast<size_t>(i % 2) * cn * D; };
    auto host_of = [&](int64_t i) { return b.x_host.get() + static_cast<size_t>((i % chunks) * chunk) * D; };
    auto rows_of = [&](int64_t i) { return std::min(chunk, n - (i % chunks) * chunk); };
    auto load = [&](int64_t i) {  // chunk i (layer >= 1) from the host into its slot, on the copy stream
      // The slot's previous chunk (i - 2) has been computed; its store, if any, is earlier on this stream.
      RA_CUDA_CHECK(cudaStreamWaitEvent(cs, slot_computed_[i % 2].get(), 0));
      RA_CUDA_CHECK(cudaMemcpyAsync(slot_of(i), host_of(i), static_cast<size_t>(rows_of(i)) * D * sizeof(float),
                                    cudaMemcpyHostToDevice, cs));
      RA_CUDA_CHECK(cudaEventRecord(slot_loaded_[i % 2].get(), cs));
    };
    for (int64_t l = 0; l < m.n_layers; ++l) {
      const DeviceLayerWeights<T>& lw = w_.layers[static_cast<size_t>(l)];
      T* k = scratch ? b.k_scratch.get() : k_cache_[static_cast<size_t>(l)].get();
      T* v = scratch ? b.v_scratch.get() : v_cache_[static_cast<size_t>(l)].get();
      const int64_t cap = scratch ? n : slots_;
      for (int64_t r0 = 0; r0 < n; r0 += chunk) {
        const int64_t rows = std::min(chunk, n - r0);
        const int ir = static_cast<int>(rows);
        const int64_t i = l * chunks + r0 / chunk;
        float* x = b.x.get() + static_cast<size_t>(r0) * D;
        if (host_residual) {
          x = slot_of(i);
          if (i + 1 < total && i + 1 >= chunks) load(i + 1);  // prefetch, while this chunk computes
          if (l == 0) {
            RA_CUDA_CHECK(embed_rows<T>(b.tokens.get() + r0, w_.embed.get(), x, ir, static_cast<int>(m.hidden_size), s));
          } else {
            RA_CUDA_CHECK(cudaStreamWaitEvent(s, slot_loaded_[i % 2].get(), 0));
          }
        }
        RA_CUDA_CHECK(rms_norm_rows<T>(x, lw.attn_norm.get(), b.xn.get(), ir, static_cast<int>(D), m.rms_norm_eps, s));
        gemm_.run<T>(b.xn.get(), lw.wqkv.get(), b.qkv.get(), rows, qkv_rows, m.hidden_size, false, s);
        RA_CUDA_CHECK(rope_append_prefill<T>(b.qkv.get(), b.q.get(), k, v, ir, p0 + r0, static_cast<int>(m.n_heads),
                                             static_cast<int>(m.n_kv_heads), static_cast<int>(m.head_dim), cap,
                                             inv_freq_.get(), s));
        if (qkv_observer_) observe(b, l, p0 + r0, rows, k, v, cap);
        if (lists) gather_training_queries(b, p0 + r0, rows);
        RA_CUDA_CHECK(prefill_attention<T>(b.q.get(), k, v, b.attn.get(), ir, p0 + r0, static_cast<int>(m.n_heads),
                                           static_cast<int>(m.n_kv_heads), static_cast<int>(m.head_dim), cap,
                                           m.attn_scale(), s));
        gemm_.run<T>(b.attn.get(), lw.wo.get(), x, rows, m.hidden_size, m.q_dim(), true, s);
        // The MLP in pieces of mlp_rows: its [rows][2 intermediate] float32 activations are the
        // prefill's largest buffer otherwise.
        for (int64_t m0 = 0; m0 < rows; m0 += mlp_rows) {
          const int64_t mr = std::min(mlp_rows, rows - m0);
          const int imr = static_cast<int>(mr);
          float* xm = x + static_cast<size_t>(m0) * D;
          RA_CUDA_CHECK(rms_norm_rows<T>(xm, lw.ffn_norm.get(), b.xn.get(), imr, static_cast<int>(D), m.rms_norm_eps, s));
          gemm_.run<T>(b.xn.get(), lw.wgu.get(), b.gate_up.get(), mr, 2 * m.intermediate_size, m.hidden_size, false,
                       s);
          RA_CUDA_CHECK(swiglu_rows<T>(b.gate_up.get(), b.act.get(), imr, static_cast<int>(I), s));
          gemm_.run<T>(b.act.get(), lw.wdown.get(), xm, mr, m.hidden_size, m.intermediate_size, true, s);
        }
        if (host_residual) {
          RA_CUDA_CHECK(cudaEventRecord(slot_computed_[i % 2].get(), s));
          if (l + 1 < m.n_layers) {  // the last layer's rows are read by nothing but the logits below
            RA_CUDA_CHECK(cudaStreamWaitEvent(cs, slot_computed_[i % 2].get(), 0));
            RA_CUDA_CHECK(cudaMemcpyAsync(host_of(i), x, static_cast<size_t>(rows) * D * sizeof(float),
                                          cudaMemcpyDeviceToHost, cs));
          }
        }
      }
      if (lists) compute_train_lists(b, l, n);
      if (scratch) keep_static_set(l, b.k_scratch.get(), b.v_scratch.get(), n);
    }
    const float* last = host_residual ? slot_of(total - 1) + static_cast<size_t>(rows_of(total - 1) - 1) * D
                                      : b.x.get() + static_cast<size_t>(n - 1) * D;
    RA_CUDA_CHECK(gemv<T>(w_.output_matrix(), last, w_.final_norm.get(), m.rms_norm_eps, logits_.get(),
                          static_cast<int>(m.vocab_size), static_cast<int>(D), GemvEpilogue::kStore, s));
    RA_CUDA_CHECK(cudaStreamSynchronize(s));  // b's buffers are freed on return
    RA_CUDA_CHECK(cudaStreamSynchronize(cs));
    position_ += n;
    base_ = -1;  // a static set prefills only at position 0; full attention keeps no copy
  }

  // The QkvObserver's view of a chunk: post-RoPE q, k and v as token-major float32 rows, or with
  // observe_kv_rows K and V coded in the wire's forms on the GPU (observe_coded).
  void observe(PrefillBuffers<T>& b, int64_t layer, int64_t first, int64_t rows, const T* k, const T* v, int64_t cap) {
    const ModelConfig& m = c();
    cudaStream_t s = stream_->get();
    const int ir = static_cast<int>(rows);
    const int hkv = static_cast<int>(m.n_kv_heads), hd = static_cast<int>(m.head_dim);
    RA_CUDA_CHECK(to_float_array<T>(b.q.get(), b.obs_q.get(), rows * m.q_dim(), s));
    if (observe_kv_rows_) return observe_coded(b, layer, first, rows, k, v, cap);
    RA_CUDA_CHECK(gather_kv_rows<T>(k, cap, first, ir, hkv, hd, b.obs_k.get(), s));
    RA_CUDA_CHECK(gather_kv_rows<T>(v, cap, first, ir, hkv, hd, b.obs_v.get(), s));
    const auto q_bytes = static_cast<size_t>(rows * m.q_dim()) * sizeof(float);
    const auto kv_bytes = static_cast<size_t>(rows * m.kv_dim()) * sizeof(float);
    RA_CUDA_CHECK(cudaMemcpyAsync(b.obs_q_h.get(), b.obs_q.get(), q_bytes, cudaMemcpyDeviceToHost, s));
    RA_CUDA_CHECK(cudaMemcpyAsync(b.obs_k_h.get(), b.obs_k.get(), kv_bytes, cudaMemcpyDeviceToHost, s));
    RA_CUDA_CHECK(cudaMemcpyAsync(b.obs_v_h.get(), b.obs_v.get(), kv_bytes, cudaMemcpyDeviceToHost, s));
    RA_CUDA_CHECK(cudaStreamSynchronize(s));
    qkv_observer_({layer, first, rows, b.obs_q_h.get(), b.obs_k_h.get(), b.obs_v_h.get()});
  }

  // K and V of the chunk coded on the GPU (encode_kv_rows: the CPU's rules bit for bit), so only the
  // coded bytes cross PCIe (int8: about a quarter of float32's); q as float32, already on its way.
  void observe_coded(PrefillBuffers<T>& b, int64_t layer, int64_t first, int64_t rows, const T* k, const T* v,
                     int64_t cap) {
    const ModelConfig& m = c();
    cudaStream_t s = stream_->get();
    const int ir = static_cast<int>(rows);
    const int hkv = static_cast<int>(m.n_kv_heads), hd = static_cast<int>(m.head_dim);
    const KvWireFormat f = *observe_kv_rows_;
    RA_CUDA_CHECK(cudaMemsetAsync(b.obs_bad.get(), 0xFF, 2 * sizeof(unsigned long long), s));  // kNoBadRow
    RA_CUDA_CHECK(encode_kv_rows<T>(k, cap, first, ir, hkv, hd, f.key, b.obs_k_rows.get(), b.obs_bad.get(), s));
    RA_CUDA_CHECK(encode_kv_rows<T>(v, cap, first, ir, hkv, hd, f.value, b.obs_v_rows.get(), b.obs_bad.get() + 1, s));
    const auto q_bytes = static_cast<size_t>(rows * m.q_dim()) * sizeof(float);
    const auto kv_rows = static_cast<size_t>(rows * m.n_kv_heads);
    RA_CUDA_CHECK(cudaMemcpyAsync(b.obs_q_h.get(), b.obs_q.get(), q_bytes, cudaMemcpyDeviceToHost, s));
    RA_CUDA_CHECK(cudaMemcpyAsync(b.obs_k_rows_h.get(), b.obs_k_rows.get(), kv_rows * wire_row_bytes(f.key, hd),
                                  cudaMemcpyDeviceToHost, s));
    RA_CUDA_CHECK(cudaMemcpyAsync(b.obs_v_rows_h.get(), b.obs_v_rows.get(), kv_rows * wire_row_bytes(f.value, hd),
                                  cudaMemcpyDeviceToHost, s));
    RA_CUDA_CHECK(cudaMemcpyAsync(b.obs_bad_h.get(), b.obs_bad.get(), 2 * sizeof(unsigned long long),
                                  cudaMemcpyDeviceToHost, s));
    RA_CUDA_CHECK(cudaStreamSynchronize(s));
    const char* sides[2] = {"key", "value"};
    for (int side = 0; side < 2; ++side) {
      const unsigned long long bad = b.obs_bad_h.get()[side];
      RA_REQUIRE(bad == kNoBadRow,
                 "{}: layer {}, position {}, kv head {}: the {} holds inf or NaN, which an int8 row cannot code (its "
                 "scale is max |x| / 127)",
                 source_, layer, first + static_cast<int64_t>(bad / hkv), static_cast<int64_t>(bad % hkv), sides[side]);
    }
    QkvChunk chunk{layer, first, rows, b.obs_q_h.get(), nullptr, nullptr};
    chunk.k_rows = b.obs_k_rows_h.get();
    chunk.v_rows = b.obs_v_rows_h.get();
    chunk.rows_format = f;
    qkv_observer_(chunk);
  }

  bool lists_enabled() const {
    // Wider lists than the selection kernel takes are left to the retrievers.
    return static_set_.enabled && train_lists_.width > 0 && train_lists_.width <= kMaxTrainListWidth &&
           train_lists_.key_query_width >= 0 && train_lists_.key_query_width <= kMaxTrainListWidth &&
           train_lists_.on_layer && !train_lists_.positions.empty();
  }

  void allocate_train_lists(PrefillBuffers<T>& b, int64_t n) {
    const ModelConfig& m = c();
    const TrainListOptions& t = train_lists_;
    RA_REQUIRE(t.positions.back() < n && t.end <= n, "training lists: positions up to {} and keys up to {} in a {}-token prompt",
               t.positions.back(), t.end, n);
    const auto nt = t.positions.size();
    const int64_t offloaded = t.end - t.first;
    const int64_t group_rows = (m.n_heads / m.n_kv_heads) * static_cast<int64_t>(nt);
    // Scores of at most 128 MiB at a time (the selection reads them five times, from memory; one block
    // per row): 256 rows at 128K keys, two blocks per SM, and a bounded part of the GPU at any length.
    b.score_rows = std::clamp<int64_t>((int64_t{128} << 20) / (4 * std::max<int64_t>(1, offloaded)), 1, group_rows);
    b.train_positions = DeviceBuffer<int64_t>(nt, "training positions");
    b.train_q = DeviceBuffer<T>(static_cast<size_t>(m.n_heads * m.head_dim) * nt, "training queries");
    b.train_scores = DeviceBuffer<float>(static_cast<size_t>(b.score_rows * std::max<int64_t>(1, offloaded)),
                                         "training scores");
    const size_t list_ids = static_cast<size_t>(m.n_heads) * nt * static_cast<size_t>(t.width);
    b.lists = DeviceBuffer<int32_t>(list_ids, "training lists");
    b.lists_h = PinnedBuffer<int32_t>(list_ids, "training lists");
    if (t.key_query_width > 0) {
      // The same score buffer, a block of keys against all of the group's training rows at a time.
      b.key_rows = std::max<int64_t>(1, b.train_scores.size() / static_cast<size_t>(std::max<int64_t>(1, group_rows)));
      const size_t ids = static_cast<size_t>(m.n_kv_heads * offloaded * t.key_query_width);
      b.key_queries = DeviceBuffer<int32_t>(ids, "key queries");
      b.key_queries_h = PinnedBuffer<int32_t>(ids, "key queries");
    }
    RA_CUDA_CHECK(cudaMemcpyAsync(b.train_positions.get(), t.positions.data(), nt * sizeof(int64_t),
                                  cudaMemcpyHostToDevice, stream_->get()));
  }

  // The chunk's training queries (post-RoPE, in b.q) into b.train_q.
  void gather_training_queries(PrefillBuffers<T>& b, int64_t first, int64_t rows) {
    const ModelConfig& m = c();
    const auto& pos = train_lists_.positions;
    const auto j0 = std::lower_bound(pos.begin(), pos.end(), first) - pos.begin();
    const auto j1 = std::lower_bound(pos.begin(), pos.end(), first + rows) - pos.begin();
    RA_CUDA_CHECK(gather_train_queries<T>(b.q.get(), first, static_cast<int>(m.n_heads), static_cast<int>(m.head_dim),
                                          b.train_positions.get(), static_cast<int>(j0), static_cast<int>(j1 - j0),
                                          static_cast<int>(pos.size()), b.train_q.get(), stream_->get()));
  }

  // Layer `layer`'s training lists, while its keys are in the scratch ([n_kv_heads][n][head_dim]): per
  // kv head, its group's training queries times its offloaded keys, a block of rows at a time, then each
  // row's top `width`; handed to on_layer from pinned memory.
  void compute_train_lists(PrefillBuffers<T>& b, int64_t layer, int64_t n) {
    const ModelConfig& m = c();
    cudaStream_t s = stream_->get();
    const TrainListOptions& t = train_lists_;
    const auto nt = static_cast<int64_t>(t.positions.size());
    const int64_t hd = m.head_dim, group = m.n_heads / m.n_kv_heads, offloaded = t.end - t.first;
    if (offloaded == 0) {
      RA_CUDA_CHECK(cudaMemsetAsync(b.lists.get(), 0xff, b.lists.bytes(), s));  // every id -1
    }
    for (int64_t g = 0; g < m.n_kv_heads && offloaded > 0; ++g) {
      const T* keys = b.k_scratch.get() + (g * n + t.first) * hd;
      const T* queries = b.train_q.get() + g * group * nt * hd;  // the group's heads are consecutive
      int32_t* out = b.lists.get() + g * group * nt * t.width;
      for (int64_t r0 = 0; r0 < group * nt; r0 += b.score_rows) {
        const int64_t rows = std::min(b.score_rows, group * nt - r0);
        gemm_.run<T>(queries + r0 * hd, keys, b.train_scores.get(), rows, offloaded, hd, false, s);
        RA_CUDA_CHECK(row_top_k(b.train_scores.get(), offloaded, static_cast<int>(rows), static_cast<int>(offloaded),
                                t.width, out + r0 * t.width, t.width, s));
      }
    }
    RA_CUDA_CHECK(cudaMemcpyAsync(b.lists_h.get(), b.lists.get(), b.lists.bytes(), cudaMemcpyDeviceToHost, s));
    if (t.key_query_width > 0) compute_key_queries(b, n);
    RA_CUDA_CHECK(cudaStreamSynchronize(s));
    t.on_layer(layer, b.lists_h.get(), t.key_query_width > 0 ? b.key_queries_h.get() : nullptr);
  }

  // Each offloaded key's best key_query_width training rows of its group (GraphBuildParams::
  // connect_query_lists): per kv head, a block of its keys times the group's training queries, then each
  // key's top ids; copied to pinned memory on the stream (compute_train_lists synchronises).
  void compute_key_queries(PrefillBuffers<T>& b, int64_t n) {
    const ModelConfig& m = c();
    cudaStream_t s = stream_->get();
    const TrainListOptions& t = train_lists_;
    const auto nt = static_cast<int64_t>(t.positions.size());
    const int64_t hd = m.head_dim, group = m.n_heads / m.n_kv_heads, offloaded = t.end - t.first;
    const int64_t rows_q = group * nt, width = t.key_query_width;
    for (int64_t g = 0; g < m.n_kv_heads; ++g) {
      const T* keys = b.k_scratch.get() + (g * n + t.first) * hd;
      const T* queries = b.train_q.get() + g * group * nt * hd;
      int32_t* out = b.key_queries.get() + g * offloaded * width;
      for (int64_t k0 = 0; k0 < offloaded; k0 += b.key_rows) {
        const int64_t rows = std::min(b.key_rows, offloaded - k0);
        gemm_.run<T>(keys + k0 * hd, queries, b.train_scores.get(), rows, rows_q, hd, false, s);
        RA_CUDA_CHECK(row_top_k(b.train_scores.get(), rows_q, static_cast<int>(rows), static_cast<int>(rows_q),
                                static_cast<int>(width), out + k0 * width, width, s));
      }
    }
    RA_CUDA_CHECK(cudaMemcpyAsync(b.key_queries_h.get(), b.key_queries.get(), b.key_queries.bytes(),
                                  cudaMemcpyDeviceToHost, s));
  }

  // Moves the sinks and the window of a prefilled prompt of n tokens from the layer's scratch
  // ([n_kv_heads][n][head_dim]) into its static cache, at the slots cuda::cache_slot gives them.
  void keep_static_set(int64_t layer, const T* k, const T* v, int64_t n) {
    const ModelConfig& m = c();
    cudaStream_t s = stream_->get();
    T* kc = k_cache_[static_cast<size_t>(layer)].get();
    T* vc = v_cache_[static_cast<size_t>(layer)].get();
    auto copy = [&](int64_t first_position, int64_t count) {  // a run of consecutive slots
      const int64_t slot = cache_slot(first_position, sinks_, window_);
      for (auto [src, dst] : {std::pair{k, kc}, std::pair{v, vc}}) {
        RA_CUDA_CHECK(copy_kv_slots<T>(src, n, first_position, dst, slots_, slot, count,
                                       static_cast<int>(m.n_kv_heads), static_cast<int>(m.head_dim), s));
      }
    };
    const int64_t sink_end = std::min(sinks_, n);
    if (sink_end > 0) copy(0, sink_end);
    int64_t p = std::max(sinks_, n - window_);  // the window: positions [p, n), at most one wrap of the ring
    while (p < n) {
      const int64_t slot = cache_slot(p, sinks_, window_);
      const int64_t count = std::min(n - p, sinks_ + window_ - slot);
      copy(p, count);
      p += count;
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Decode: one token at position_.
  // ---------------------------------------------------------------------------------------------

  void stage_io(int32_t token, const SamplingParams& params, uint64_t step) {
    DecodeIo& io = *io_h_.get();
    io.position = position_;
    io.step = step;
    io.params = params;
    io.token = token;
    RA_CUDA_CHECK(cudaMemcpyAsync(io_.get(), io_h_.get(), sizeof(DecodeIo), cudaMemcpyHostToDevice, stream_->get()));
  }

  int32_t decode(int32_t token, const SamplingParams& params, uint64_t step, std::span<float> logits) {
    cudaStream_t s = stream_->get();
    stage_io(token, params, step);
    if (static_set_.remote != nullptr) {
      decode_with_remote();
    } else if (graph_.ready()) {
      graph_.launch(s);
    } else {
      enqueue_decode_step();  // the first step runs eagerly (module loads, kernel attributes), then:
      graph_.capture(s, [&] { enqueue_decode_step(); });
    }
    RA_CUDA_CHECK(cudaMemcpyAsync(next_token_h_.get(), &io_.get()->token, sizeof(int32_t), cudaMemcpyDeviceToHost, s));
    if (!logits.empty()) {
      RA_CUDA_CHECK(cudaMemcpyAsync(logits_h_.get(), logits_.get(), logits_.bytes(), cudaMemcpyDeviceToHost, s));
    }
    RA_CUDA_CHECK(cudaStreamSynchronize(s));
    if (!logits.empty()) std::memcpy(logits.data(), logits_h_.get(), logits_.bytes());
    ++position_;
    return *next_token_h_.get();
  }

  // The layer's work before attention: fused norm + qkv GEMV, then RoPE and the KV append (which saves
  // the evicted token's K/V first).
  void enqueue_attention_input(int64_t l) {
    const ModelConfig& m = c();
    cudaStream_t s = stream_->get();
    const DeviceLayerWeights<T>& lw = w_.layers[static_cast<size_t>(l)];
    RA_CUDA_CHECK(gemv<T>(lw.wqkv.get(), x_.get(), lw.attn_norm.get(), m.rms_norm_eps, qkv_.get(),
                          static_cast<int>(m.q_dim() + 2 * m.kv_dim()), static_cast<int>(m.hidden_size),
                          GemvEpilogue::kStore, s));
    RA_CUDA_CHECK(rope_append_decode<T>(qkv_.get(), q_.get(), k_cache_[static_cast<size_t>(l)].get(),
                                        v_cache_[static_cast<size_t>(l)].get(), &io_.get()->position, sinks_, window_,
                                        static_cast<int>(m.n_heads), static_cast<int>(m.n_kv_heads),
                                        static_cast<int>(m.head_dim), slots_, inv_freq_.get(), evicted_k_.get(),
                                        evicted_v_.get(), s, cos_sin_.get()));
  }

  void enqueue_static_attention(int64_t l) {
    RA_CUDA_CHECK(decode_attention<T>(attention_plan_, q_.get(), k_cache_[static_cast<size_t>(l)].get(),
                                      v_cache_[static_cast<size_t>(l)].get(), &io_.get()->position, sinks_, window_,
                                      c().attn_scale(), o_.get(), lse_.get(), attention_workspace_.get(),
                                      stream_->get()));
  }

  // The layer's work after attention: output projection into the residual, then the fused
  // norm + gate/up GEMV with SwiGLU and the down projection into the residual.
  void enqueue_attention_output_and_mlp(int64_t l) {
    const ModelConfig& m = c();
    cudaStream_t s = stream_->get();
    const DeviceLayerWeights<T>& lw = w_.layers[static_cast<size_t>(l)];
    const int D = static_cast<int>(m.hidden_size), I = static_cast<int>(m.intermediate_size);
    RA_CUDA_CHECK(gemv<T>(lw.wo.get(), o_.get(), nullptr, 0.0f, x_.get(), D, static_cast<int>(m.q_dim()),
                          GemvEpilogue::kAddInto, s));
    RA_CUDA_CHECK(gemv<T>(lw.wgu.get(), x_.get(), lw.ffn_norm.get(), m.rms_norm_eps, act_.get(), 2 * I, D,
                          GemvEpilogue::kSwiGlu, s));
    RA_CUDA_CHECK(gemv<T>(lw.wdown.get(), act_.get(), nullptr, 0.0f, x_.get(), D, I, GemvEpilogue::kAddInto, s));
  }

  // The step's token embedding, and its RoPE rotation, evaluated once for every layer.
  void enqueue_embedding() {
    RA_CUDA_CHECK(embed_rows<T>(&io_.get()->token, w_.embed.get(), x_.get(), 1, static_cast<int>(c().hidden_size),
                                stream_->get()));
    RA_CUDA_CHECK(rope_cos_sin_decode(&io_.get()->position, inv_freq_.get(), static_cast<int>(c().head_dim),
                                      cos_sin_.get(), stream_->get()));
  }

  // Final norm + lm_head, then the next token into io.token (read by the next step's embedding).
  void enqueue_logits_and_sample() {
    const ModelConfig& m = c();
    cudaStream_t s = stream_->get();
    RA_CUDA_CHECK(gemv<T>(w_.output_matrix(), x_.get(), w_.final_norm.get(), m.rms_norm_eps, logits_.get(),
                          static_cast<int>(m.vocab_size), static_cast<int>(m.hidden_size), GemvEpilogue::kStore, s));
    DecodeIo* io = io_.get();
    RA_CUDA_CHECK(
        sample_token(logits_.get(), static_cast<int>(m.vocab_size), &io->params, &io->step, &io->token, s));
  }

  // The whole step without a remote part: what the graph holds.
  void enqueue_decode_step() {
    enqueue_embedding();
    for (int64_t l = 0; l < c().n_layers; ++l) {
      enqueue_attention_input(l);
      enqueue_static_attention(l);
      enqueue_attention_output_and_mlp(l);
    }
    enqueue_logits_and_sample();
    RA_CUDA_CHECK(increment_position(&io_.get()->position, stream_->get()));
  }

  // With retrievers: per layer, q (and the evicted token) go to the host and out to the retrievers,
  // the GPU computes the static partial while they search, and their partials are merged on the GPU.
  void decode_with_remote() {
    const ModelConfig& m = c();
    cudaStream_t s = stream_->get();
    RemoteAttention& remote = *static_set_.remote;
    const int64_t p = position_;
    const int64_t evict = evicted_position(p, sinks_, window_);
    const auto q_bytes = static_cast<size_t>(m.q_dim()) * sizeof(float);
    const auto kv_bytes = static_cast<size_t>(m.kv_dim()) * sizeof(float);
    enqueue_embedding();
    for (int64_t l = 0; l < m.n_layers; ++l) {
      enqueue_attention_input(l);
      RA_CUDA_CHECK(cudaMemcpyAsync(q_h_.get(), q_.get(), q_bytes, cudaMemcpyDeviceToHost, s));
      if (evict >= 0) {
        RA_CUDA_CHECK(cudaMemcpyAsync(evicted_k_h_.get(), evicted_k_.get(), kv_bytes, cudaMemcpyDeviceToHost, s));
        RA_CUDA_CHECK(cudaMemcpyAsync(evicted_v_h_.get(), evicted_v_.get(), kv_bytes, cudaMemcpyDeviceToHost, s));
      }
      RA_CUDA_CHECK(cudaEventRecord(q_ready_.get(), s));
      enqueue_static_attention(l);  // queued behind the copies: runs while the host talks to the retrievers
      RA_CUDA_CHECK(cudaEventSynchronize(q_ready_.get()));
      remote.begin(l, p, q_h_.get(), evict, evicted_k_h_.get(), evicted_v_h_.get());
      remote.finish(l, remote_o_h_.get(), remote_lse_h_.get());
      RA_CUDA_CHECK(cudaMemcpyAsync(remote_o_.get(), remote_o_h_.get(), q_bytes, cudaMemcpyHostToDevice, s));
      RA_CUDA_CHECK(cudaMemcpyAsync(remote_lse_.get(), remote_lse_h_.get(), static_cast<size_t>(m.n_heads) * sizeof(float),
                                    cudaMemcpyHostToDevice, s));
      RA_CUDA_CHECK(merge_partials(o_.get(), lse_.get(), remote_o_.get(), remote_lse_.get(), static_cast<int>(m.n_heads),
                                   static_cast<int>(m.head_dim), s));
      enqueue_attention_output_and_mlp(l);
      // The pinned partials are rewritten by the next layer's finish() only after its q event, which
      // follows these copies on the stream.
    }
    enqueue_logits_and_sample();
  }

  const ModelConfig config_;
  const std::string source_;
  std::unique_ptr<Stream> stream_;
  DeviceWeights<T> w_;
  Gemm gemm_;
  const int64_t chunk_;
  const QkvObserver qkv_observer_;
  const std::optional<KvWireFormat> observe_kv_rows_;
  const StaticSetOptions static_set_;
  const TrainListOptions train_lists_;
  int64_t capacity_ = 0;
  int64_t sinks_ = 0, window_ = 0;  // window 0: full attention (slot = position)
  int64_t slots_ = 0;               // cache slots per layer and kv head: capacity, or sinks + window
  int64_t position_ = 0;
  int64_t base_ = -1;  // the position keep_base() kept (static set), or -1

  std::vector<DeviceBuffer<T>> k_cache_, v_cache_;  // per layer: [n_kv_heads][slots][head_dim]
  std::vector<DeviceBuffer<T>> base_k_, base_v_;    // keep_base()'s copy of them (static set, made on first use)
  DeviceBuffer<float> inv_freq_;                     // [head_dim / 2]
  DeviceBuffer<float> cos_sin_;                      // [head_dim / 2][2] the decode step's (cos, sin)
  // Decode step buffers (float32).
  DeviceBuffer<float> x_;          // [hidden] residual
  DeviceBuffer<float> qkv_;        // [(n_heads + 2 n_kv_heads) head_dim]
  DeviceBuffer<float> q_, o_;      // [n_heads][head_dim] post-RoPE query, attention output
  DeviceBuffer<float> lse_;        // [n_heads]
  DeviceBuffer<float> act_;        // [intermediate]
  DeviceBuffer<float> logits_;     // [vocab]
  DeviceBuffer<float> evicted_k_, evicted_v_;  // [n_kv_heads][head_dim]
  DeviceBuffer<DecodeIo> io_;
  PinnedBuffer<DecodeIo> io_h_;
  PinnedBuffer<int32_t> next_token_h_;
  PinnedBuffer<float> logits_h_;   // [vocab]
  DecodeAttentionPlan attention_plan_;
  DeviceBuffer<std::byte> attention_workspace_;
  Graph graph_;
  // The prefill's residual stream on the host (a static set's, over several chunks): its copies run on
  // their own stream, ordered against the compute stream by these events, one per device slot.
  Stream copy_stream_;
  Event slot_loaded_[2], slot_computed_[2];
  // Remote part (offloaded modes).
  Event q_ready_;
  DeviceBuffer<float> remote_o_, remote_lse_;  // [n_heads][head_dim], [n_heads]
  PinnedBuffer<float> q_h_, evicted_k_h_, evicted_v_h_, remote_o_h_, remote_lse_h_;
};

template <typename T>
std::unique_ptr<Backend> make(const ModelConfig& config, const std::string& source,
                              const std::function<DeviceWeights<T>(cudaStream_t)>& weights,
                              const BackendOptions& options) {
  auto stream = std::make_unique<Stream>();
  DeviceWeights<T> w = weights(stream->get());
  return std::make_unique<CudaBackend<T>>(config, source, std::move(stream), std::move(w), options);
}

}  // namespace
}  // namespace cuda

std::unique_ptr<Backend> make_cuda_backend(const Model& model, const BackendOptions& options) {
  RA_REQUIRE(cuda_device_visible(), "the CUDA backend needs a GPU: {}", cuda_device_problem());
  model.config.validate(model.source);
  if (model.weight_dtype == "F32") {
    return cuda::make<float>(model.config, model.source,
                             [&](cudaStream_t s) { return cuda::upload_weights<float>(model, s); }, options);
  }
  return cuda::make<cuda::bfloat16>(model.config, model.source,
                                    [&](cudaStream_t s) { return cuda::upload_weights<cuda::bfloat16>(model, s); },
                                    options);
}

std::unique_ptr<Backend> make_cuda_backend_random(const ModelConfig& config, uint64_t seed,
                                                  const BackendOptions& options) {
  RA_REQUIRE(cuda_device_visible(), "the CUDA backend needs a GPU: {}", cuda_device_problem());
  return cuda::make<cuda::bfloat16>(
      config, "random weights",
      [&](cudaStream_t s) { return cuda::random_weights<cuda::bfloat16>(config, seed, s); }, options);
}

}  // namespace ra
