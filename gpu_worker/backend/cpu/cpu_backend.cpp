// The float32 CPU reference backend: the full Llama forward pass with a KV cache.
//
// Every prefill chunk and decode step runs the same code path. Attention for a chunk of n queries at
// positions [p, p + n) is computed per query head with two GEMMs over the cached keys [0, p + n):
// scores [n][p+n], masked causally, turned into weights by the shared partial-state math
// (common/partial_state.h), then multiplied by the values. Memory stays O(chunk · context).

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <optional>

#include "common/error.h"
#include "common/partial_state.h"
#include "gpu_worker/attention/merge_partials.h"
#include "common/splitmix64.h"
#include "gpu_worker/backend/backend.h"
#include "gpu_worker/backend/cpu/cpu_ops.h"
#include "gpu_worker/decode/sampler.h"
#include "common/half.h"
#include "gpu_worker/model/rope.h"

namespace ra {
namespace {

class CpuBackend final : public Backend {
 public:
  CpuBackend(const Model& model, const BackendOptions& options)
      : model_(model),
        config_(model.config),
        chunk_(std::max<int64_t>(1, options.prefill_chunk)),
        qkv_observer_(options.qkv_observer),
        static_set_(options.static_set) {
    const ModelConfig& c = config_;
    capacity_ = options.max_positions > 0 ? options.max_positions : c.max_position_embeddings;
    RA_REQUIRE(!static_set_.enabled || (static_set_.sinks >= 0 && static_set_.window >= 1),
               "static set needs sinks >= 0 and window >= 1 (got {} and {})", static_set_.sinks, static_set_.window);
    RA_REQUIRE(capacity_ <= c.max_position_embeddings,
               "{}: a KV cache of {} positions exceeds max_position_embeddings ({})", model.source,
               capacity_, c.max_position_embeddings);
    if (options.threads > 0) omp_set_num_threads(options.threads);
    cpu::single_threaded_blas();
    rope_ = make_rope_table(c, capacity_);
    const auto cache_size = static_cast<size_t>(c.n_layers * c.n_kv_heads * capacity_ * c.head_dim);
    k_cache_.resize(cache_size);
    v_cache_.resize(cache_size);
    const auto n = static_cast<size_t>(chunk_);
    x_.resize(n * c.hidden_size);
    xn_.resize(n * c.hidden_size);
    q_.resize(n * c.q_dim());
    k_.resize(n * c.kv_dim());
    v_.resize(n * c.kv_dim());
    attn_.resize(n * c.q_dim());
    proj_.resize(n * c.hidden_size);
    gate_.resize(n * c.intermediate_size);
    up_.resize(n * c.intermediate_size);
    // Chunks use one head's [n][keys] scores at a time; decode steps use row h for head h.
    scores_.resize(std::max(n, static_cast<size_t>(c.n_heads)) * static_cast<size_t>(capacity_));
    lse_.resize(static_cast<size_t>(c.n_heads));
    remote_o_.resize(static_cast<size_t>(c.q_dim()));
    remote_lse_.resize(static_cast<size_t>(c.n_heads));
    evict_k_.resize(static_cast<size_t>(c.kv_dim()));
    evict_v_.resize(static_cast<size_t>(c.kv_dim()));
    step_logits_.resize(static_cast<size_t>(c.vocab_size));
  }

  std::string name() const override { return "cpu"; }
  const ModelConfig& config() const override { return config_; }
  int64_t position() const override { return position_; }
  int64_t max_positions() const override { return capacity_; }
  void reset() override {
    position_ = 0;
    decoding_ = false;
  }

  // The cache keeps every position, so returning to `position` is only the count: what lies beyond is
  // overwritten by the next forward(), and with a static set the window of a decode step at `position`
  // is read from the same cache (the caller rewinds the remote side; see Backend::truncate).
  void truncate(int64_t position) override {
    RA_REQUIRE(position >= 0 && position <= position_, "truncate({}): the KV cache holds {} positions", position,
               position_);
    position_ = position;
    decoding_ = false;
  }
  bool can_truncate() const override { return true; }

  void read_kv(int64_t begin, int64_t end, std::span<float> k, std::span<float> v) const override {
    RA_REQUIRE(0 <= begin && begin <= end && end <= position_, "read_kv: positions [{}, {}) are not all in the cache "
               "(it holds [0, {}))", begin, end, position_);
    for_each_kv_run(begin, end, k.size(), v.size(), [&](size_t cache_at, size_t at, size_t n) {
      std::memcpy(k.data() + at, k_cache_.data() + cache_at, n * sizeof(float));
      std::memcpy(v.data() + at, v_cache_.data() + cache_at, n * sizeof(float));
    });
  }

  void write_kv(int64_t begin, int64_t end, std::span<const float> k, std::span<const float> v) override {
    RA_REQUIRE(0 <= begin && begin <= end && end <= capacity_, "write_kv: positions [{}, {}) exceed the cache of {} "
               "positions", begin, end, capacity_);
    for_each_kv_run(begin, end, k.size(), v.size(), [&](size_t cache_at, size_t at, size_t n) {
      std::memcpy(k_cache_.data() + cache_at, k.data() + at, n * sizeof(float));
      std::memcpy(v_cache_.data() + cache_at, v.data() + at, n * sizeof(float));
    });
    position_ = end;
    decoding_ = false;
  }

  // Backend::decode_sample without its per-step buffers: the logits land in step_logits_ when the
  // caller wants none, and one Sampler (whose scratch grows once) serves while the knobs stay the same.
  int32_t decode_sample(int32_t token, const SamplingParams& params, uint64_t step, std::span<float> logits) override {
    const std::span<float> out = logits.empty() ? std::span<float>(step_logits_) : logits;
    const int32_t one[1] = {token};
    forward(one, out);
    if (!sampler_ || sampler_params_.temperature != params.temperature || sampler_params_.top_p != params.top_p ||
        sampler_params_.seed != params.seed) {
      sampler_.emplace(params);
      sampler_params_ = params;
    }
    return sampler_->next_at(out, step);
  }

  void fill_cache_for_timing(int64_t position, uint64_t seed) override {
    RA_REQUIRE(position >= 0 && position <= capacity_, "fill_cache_for_timing: position {} outside [0, {}]", position,
               capacity_);
    SplitMix64 rng(seed);
    for (float* cache : {k_cache_.data(), v_cache_.data()}) {
      for (int64_t l = 0; l < config_.n_layers * config_.n_kv_heads; ++l) {
        float* rows = cache + l * capacity_ * config_.head_dim;
        for (int64_t i = 0; i < position * config_.head_dim; ++i) rows[i] = static_cast<float>(rng.unit() - 0.5);
      }
    }
    position_ = position;
  }

  void forward(std::span<const int32_t> tokens, std::span<float> logits) override {
    RA_REQUIRE(!tokens.empty(), "forward() needs at least one token");
    RA_REQUIRE(position_ + static_cast<int64_t>(tokens.size()) <= capacity_,
               "{} tokens at position {} exceed the KV cache capacity of {} positions", tokens.size(),
               position_, capacity_);
    RA_REQUIRE(static_cast<int64_t>(logits.size()) == config_.vocab_size, "logits span has {} entries, vocab is {}",
               logits.size(), config_.vocab_size);
    for (int32_t t : tokens) {
      RA_REQUIRE(t >= 0 && t < config_.vocab_size, "token id {} is outside the vocabulary [0, {})", t,
                 config_.vocab_size);
    }
    RA_REQUIRE(!static_set_.enabled || position_ == 0 || tokens.size() == 1,
               "with a static set the backend decodes one token per step after the prefill (got {} tokens at "
               "position {})", tokens.size(), position_);
    decoding_ = static_set_.enabled && position_ > 0;
    for (size_t begin = 0; begin < tokens.size(); begin += static_cast<size_t>(chunk_)) {
      const size_t n = std::min(tokens.size() - begin, static_cast<size_t>(chunk_));
      run_chunk(tokens.subspan(begin, n));
    }
    final_logits(last_chunk_ - 1, logits);
  }

 private:
  float* k_at(int64_t layer, int64_t kv_head) {
    return k_cache_.data() + ((layer * config_.n_kv_heads + kv_head) * capacity_) * config_.head_dim;
  }
  float* v_at(int64_t layer, int64_t kv_head) {
    return v_cache_.data() + ((layer * config_.n_kv_heads + kv_head) * capacity_) * config_.head_dim;
  }

  // Calls f(offset into k_cache_ / v_cache_, offset into the caller's [n_layers][n_kv_heads][end - begin]
  // [head_dim] buffers, floats) for every (layer, kv head): the run of positions [begin, end).
  template <typename F>
  void for_each_kv_run(int64_t begin, int64_t end, size_t k_floats, size_t v_floats, F&& f) const {
    const int64_t hd = config_.head_dim;
    const auto n = static_cast<size_t>((end - begin) * hd);
    const auto want = static_cast<size_t>(config_.n_layers * config_.n_kv_heads) * n;
    RA_REQUIRE(k_floats == want && v_floats == want, "KV copy of positions [{}, {}): {} and {} floats given, {} needed",
               begin, end, k_floats, v_floats, want);
    for (int64_t lh = 0; lh < config_.n_layers * config_.n_kv_heads; ++lh) {
      f(static_cast<size_t>((lh * capacity_ + begin) * hd), static_cast<size_t>(lh) * n, n);
    }
  }

  // Runs n = tokens.size() <= chunk_ tokens through every layer; leaves the final hidden states in x_.
  void run_chunk(std::span<const int32_t> tokens) {
    const ModelConfig& c = config_;
    const auto& w = model_.weights;
    const int64_t n = static_cast<int64_t>(tokens.size());
    const int64_t D = c.hidden_size;
    for (int64_t i = 0; i < n; ++i) {
      std::memcpy(x_.data() + i * D, w.embed.data() + tokens[i] * D, D * sizeof(float));
    }
    for (int64_t l = 0; l < c.n_layers; ++l) {
      const LayerWeights& lw = w.layers[l];
      cpu::rms_norm(x_.data(), lw.attn_norm.data(), xn_.data(), n, D, c.rms_norm_eps);
      cpu::linear(xn_.data(), lw.wq.data(), q_.data(), n, D, c.q_dim());
      cpu::linear(xn_.data(), lw.wk.data(), k_.data(), n, D, c.kv_dim());
      cpu::linear(xn_.data(), lw.wv.data(), v_.data(), n, D, c.kv_dim());
      rotate_and_cache(l, n);
      if (qkv_observer_) qkv_observer_({l, position_, n, q_.data(), k_.data(), v_.data()});
      attention(l, n);
      cpu::linear(attn_.data(), lw.wo.data(), proj_.data(), n, c.q_dim(), D);
      add_into(x_.data(), proj_.data(), n * D);

      cpu::rms_norm(x_.data(), lw.ffn_norm.data(), xn_.data(), n, D, c.rms_norm_eps);
      cpu::linear(xn_.data(), lw.w_gate.data(), gate_.data(), n, D, c.intermediate_size);
      cpu::linear(xn_.data(), lw.w_up.data(), up_.data(), n, D, c.intermediate_size);
      cpu::silu_mul(gate_.data(), up_.data(), n * c.intermediate_size);
      cpu::linear(gate_.data(), lw.w_down.data(), proj_.data(), n, c.intermediate_size, D);
      add_into(x_.data(), proj_.data(), n * D);
    }
    position_ += n;
    last_chunk_ = n;
  }

  // The KV cache holds a 16-bit checkpoint's keys and values at its own precision (DESIGN §4), as the
  // CUDA backend's bf16 cache and the retrievers' stores do: rows are rounded (nearest even) and kept
  // widened. Without it the worker's own KV was float32 while the retrievers' was bf16, and flat ==
  // full failed on bf16 checkpoints.
  void round_to_kv_dtype(float* row, int64_t n) const {
    if (kv_round_ == KvRound::kBf16) {
      for (int64_t j = 0; j < n; ++j) row[j] = to_float(to_bf16(row[j]));
    } else if (kv_round_ == KvRound::kF16) {
      for (int64_t j = 0; j < n; ++j) row[j] = to_float(to_f16(row[j]));
    }
  }

  // Applies RoPE to q_ and k_, rounds k_ and v_ to the KV dtype and appends them to the cache at
  // positions [position_, position_ + n).
  void rotate_and_cache(int64_t layer, int64_t n) {
    const ModelConfig& c = config_;
    const int64_t hd = c.head_dim;
#pragma omp parallel for if (n > 1)
    for (int64_t i = 0; i < n; ++i) {
      const int64_t pos = position_ + i;
      for (int64_t h = 0; h < c.n_heads; ++h) apply_rope(q_.data() + i * c.q_dim() + h * hd, rope_, pos);
      for (int64_t g = 0; g < c.n_kv_heads; ++g) {
        float* k = k_.data() + i * c.kv_dim() + g * hd;
        float* v = v_.data() + i * c.kv_dim() + g * hd;
        apply_rope(k, rope_, pos);
        round_to_kv_dtype(k, hd);
        round_to_kv_dtype(v, hd);
        std::memcpy(k_at(layer, g) + pos * hd, k, hd * sizeof(float));
        std::memcpy(v_at(layer, g) + pos * hd, v, hd * sizeof(float));
      }
    }
  }

  // attn_[i][h*hd:(h+1)*hd] = causal attention of query (i, h) over cached keys [0, position_ + i].
  // A chunk runs head after head, its query rows split over threads; a single decode row runs its
  // heads in parallel instead. BLAS calls are single-threaded (see cpu_ops.h).
  void attention(int64_t layer, int64_t n) {
    const ModelConfig& c = config_;
    if (decoding_) {
      static_attention(layer);
      return;
    }
    if (n == 1) {
#pragma omp parallel for schedule(static)
      for (int64_t h = 0; h < c.n_heads; ++h) attend_rows(layer, h, 0, 1, 1, scores_.data() + h * capacity_);
      return;
    }
    const int64_t threads = std::max(1, omp_get_max_threads());
    const int64_t rows_per = (n + threads - 1) / threads;
    for (int64_t h = 0; h < c.n_heads; ++h) {
#pragma omp parallel for schedule(static)
      for (int64_t t = 0; t < threads; ++t) {
        const int64_t begin = t * rows_per;
        const int64_t end = std::min(n, begin + rows_per);
        if (begin < end) attend_rows(layer, h, begin, end, n, scores_.data() + begin * (position_ + n));
      }
    }
  }

  // Attention of query rows [begin, end) of an n-row chunk for head h; s: [end - begin][position_ + n].
  void attend_rows(int64_t layer, int64_t h, int64_t begin, int64_t end, int64_t n, float* s) {
    const ModelConfig& c = config_;
    const int64_t hd = c.head_dim;
    const int64_t qd = c.q_dim();
    const int64_t keys = position_ + end;  // the last row sees keys [0, position_ + end)
    const int64_t ld = position_ + n;
    const int64_t g = h / c.group_size();
    const int rows = static_cast<int>(end - begin);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, static_cast<int>(keys), static_cast<int>(hd),
                c.attn_scale(), q_.data() + begin * qd + h * hd, static_cast<int>(qd), k_at(layer, g),
                static_cast<int>(hd), 0.0f, s, static_cast<int>(ld));
    for (int64_t i = begin; i < end; ++i) {
      float* row = s + (i - begin) * ld;
      const int64_t visible = position_ + i + 1;
      scores_to_weights(std::span<float>(row, static_cast<size_t>(visible)));
      std::fill(row + visible, row + keys, 0.0f);
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, static_cast<int>(hd), static_cast<int>(keys), 1.0f,
                s, static_cast<int>(ld), v_at(layer, g), static_cast<int>(hd), 0.0f, attn_.data() + begin * qd + h * hd,
                static_cast<int>(qd));
  }

  // Decode step with a static set (see StaticSetOptions): the token at p = position_ attends over the
  // sinks and the window here, while the remote side (when there is one) covers the offloaded set.
  void static_attention(int64_t layer) {
    const ModelConfig& c = config_;
    const int64_t hd = c.head_dim;
    const int64_t p = position_;
    const int64_t S = static_set_.sinks;
    const int64_t sink_end = std::min(S, p + 1);
    const int64_t window_begin = std::min(p + 1, std::max(S, p + 1 - static_set_.window));
    const int64_t evict = p - static_set_.window;
    RemoteAttention* remote = static_set_.remote;
    if (remote) {
      const bool evicting = evict >= S;
      if (evicting) {
        for (int64_t g = 0; g < c.n_kv_heads; ++g) {
          std::memcpy(evict_k_.data() + g * hd, k_at(layer, g) + evict * hd, hd * sizeof(float));
          std::memcpy(evict_v_.data() + g * hd, v_at(layer, g) + evict * hd, hd * sizeof(float));
        }
      }
      remote->begin(layer, p, q_.data(), evicting ? evict : -1, evict_k_.data(), evict_v_.data());
    }
    const int64_t window_len = p + 1 - window_begin;
#pragma omp parallel for schedule(static)
    for (int64_t h = 0; h < c.n_heads; ++h) {
      const int64_t g = h / c.group_size();
      const float* q = q_.data() + h * hd;
      float* s = scores_.data() + h * capacity_;
      const float* k = k_at(layer, g);
      const float* v = v_at(layer, g);
      float* o = attn_.data() + h * hd;
      // Scores of the two static ranges side by side: s[0, sink_end) then s[sink_end, + window_len).
      if (sink_end > 0) {
        cblas_sgemv(CblasRowMajor, CblasNoTrans, static_cast<int>(sink_end), static_cast<int>(hd), c.attn_scale(), k,
                    static_cast<int>(hd), q, 1, 0.0f, s, 1);
      }
      if (window_len > 0) {
        cblas_sgemv(CblasRowMajor, CblasNoTrans, static_cast<int>(window_len), static_cast<int>(hd), c.attn_scale(),
                    k + window_begin * hd, static_cast<int>(hd), q, 1, 0.0f, s + sink_end, 1);
      }
      lse_[h] = scores_to_weights(std::span<float>(s, static_cast<size_t>(sink_end + window_len)));
      std::fill(o, o + hd, 0.0f);
      if (sink_end > 0) {
        cblas_sgemv(CblasRowMajor, CblasTrans, static_cast<int>(sink_end), static_cast<int>(hd), 1.0f, v,
                    static_cast<int>(hd), s, 1, 0.0f, o, 1);
      }
      if (window_len > 0) {
        cblas_sgemv(CblasRowMajor, CblasTrans, static_cast<int>(window_len), static_cast<int>(hd), 1.0f,
                    v + window_begin * hd, static_cast<int>(hd), s + sink_end, 1, 1.0f, o, 1);
      }
    }
    if (remote) {
      remote->finish(layer, remote_o_.data(), remote_lse_.data());
      merge_partials(attn_.data(), lse_.data(), remote_o_.data(), remote_lse_.data(), static_cast<size_t>(c.n_heads),
                     static_cast<size_t>(hd));
    }
  }

  void final_logits(int64_t row, std::span<float> logits) {
    const ModelConfig& c = config_;
    float* h = xn_.data();
    cpu::rms_norm(x_.data() + row * c.hidden_size, model_.weights.final_norm.data(), h, 1, c.hidden_size,
                  c.rms_norm_eps);
    cpu::linear(h, model_.weights.output_matrix().data(), logits.data(), 1, c.hidden_size, c.vocab_size);
  }

  static void add_into(float* x, const float* y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) x[i] += y[i];
  }

  const Model& model_;
  const ModelConfig config_;
  const int64_t chunk_;
  const QkvObserver qkv_observer_;
  enum class KvRound { kNone, kBf16, kF16 };  // the cache's precision, from the checkpoint's dtype
  const KvRound kv_round_ = model_.weight_dtype == "BF16"  ? KvRound::kBf16
                            : model_.weight_dtype == "F16" ? KvRound::kF16
                                                           : KvRound::kNone;
  const StaticSetOptions static_set_;
  bool decoding_ = false;     // this forward() is a decode step with a static set
  int64_t capacity_ = 0;
  int64_t position_ = 0;
  int64_t last_chunk_ = 0;
  RopeTable rope_;
  // KV cache: [layer][kv_head][capacity][head_dim] float32, post-RoPE keys.
  std::vector<float> k_cache_, v_cache_;
  // Per-chunk activations (n <= chunk_ rows).
  std::vector<float> x_;      // [n][hidden] residual stream
  std::vector<float> xn_;     // [n][hidden] normalised
  std::vector<float> q_;      // [n][n_heads * head_dim]
  std::vector<float> k_, v_;  // [n][n_kv_heads * head_dim]
  std::vector<float> attn_;   // [n][n_heads * head_dim]
  std::vector<float> proj_;   // [n][hidden]
  std::vector<float> gate_, up_;  // [n][intermediate]
  std::vector<float> scores_;     // [n][capacity] one head's scores, then weights
  std::vector<float> lse_;        // [n_heads] static-set lse of a decode step
  std::vector<float> remote_o_;   // [n_heads][head_dim] the retrievers' partials of a decode step
  std::vector<float> remote_lse_; // [n_heads]
  std::vector<float> evict_k_, evict_v_;  // [n_kv_heads][head_dim] the token leaving the window
  std::vector<float> step_logits_;        // [vocab] decode_sample's logits when the caller wants none
  std::optional<Sampler> sampler_;        // decode_sample's, for sampler_params_
  SamplingParams sampler_params_;
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(const Model& model, const BackendOptions& options) {
  return std::make_unique<CpuBackend>(model, options);
}

}  // namespace ra
