// The CUDA backend against the CPU reference backend, whole model: prefill and decode logits, the
// static set (window mode), chunked prefill, the QkvObserver (K and V coded on the GPU too), GPU sampling, a remote part that makes
// the offloaded mode exact ("flat == full" in one process), and the benchmark hooks. Float32 models
// must agree to float rounding; bf16 models to bf16 rounding of activations and KV.

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "common/partial_state.h"
#include "gpu_worker/backend/backend.h"
#include "gpu_worker/backend/cuda/cuda_backend.h"
#include "gpu_worker/decode/sampler.h"
#include "gpu_worker/model/model_loader.h"
#include "gpu_worker/model/synthetic_model.h"
#include "tests/gpu/gpu_test_support.h"
#include "tests/support/temp_dir.h"
#include "tests/support/tiny_hf_model.h"

namespace ra {
namespace {

using gpu_test::have_gpu;

// NMSE tolerances (test-backend-ops' metric, Σ(a − r)² / Σ r²). Float32 models differ only by summation
// order (cuBLAS, split-K attention): ~1e-12 seen class. bf16 models round every GEMM input and the KV
// cache to bf16 (2^-9 relative): ~1e-5 expected; a wrong RoPE, mask or GQA mapping gives > 1e-2.
constexpr double kF32Tolerance = 1e-8;
constexpr double kBf16Tolerance = 1e-3;

enum class TestModel { kSyntheticF32, kTinyHfBf16, kLlama3RopeF32 };

std::string model_name(const testing::TestParamInfo<TestModel>& info) {
  switch (info.param) {
    case TestModel::kSyntheticF32: return "SyntheticF32";
    case TestModel::kTinyHfBf16: return "TinyHfBf16";
    case TestModel::kLlama3RopeF32: return "Llama3RopeF32";
  }
  return "unknown";
}

Model make_test_model(TestModel which) {
  switch (which) {
    case TestModel::kSyntheticF32: {
      SyntheticModelSpec spec;
      spec.hidden_size = 64;
      spec.n_layers = 2;
      spec.n_heads = 4;
      spec.n_kv_heads = 2;
      spec.head_dim = 16;
      spec.intermediate_size = 96;
      spec.max_position_embeddings = 512;
      return make_synthetic_model(spec);
    }
    case TestModel::kTinyHfBf16: {
      test::TempDir dir;
      test::TinyHfSpec spec;  // hidden 64, 2 layers, 4 q / 2 kv heads of 16, bf16, byte vocab
      spec.head_dim = 32;
      spec.intermediate = 160;
      spec.max_position_embeddings = 512;
      test::write_tiny_hf_model(dir.path(), spec);
      return load_model(dir.path());
    }
    case TestModel::kLlama3RopeF32: {
      // Llama-3.1 RoPE scaling with a short original context, 3:1 GQA, head_dim 64 (the tensor-core
      // prefill path needs bf16, so this one exercises the generic attention kernels).
      SyntheticModelSpec spec;
      spec.hidden_size = 96;
      spec.n_layers = 2;
      spec.n_heads = 6;
      spec.n_kv_heads = 2;
      spec.head_dim = 64;
      spec.intermediate_size = 128;
      spec.max_position_embeddings = 512;
      Model m = make_synthetic_model(spec);
      m.config.rope_scaling = {true, 8.0f, 1.0f, 4.0f, 32};
      return m;
    }
  }
  return {};
}

bool is_bf16(const Model& m) { return m.weight_dtype != "F32"; }

std::vector<int32_t> test_tokens(int64_t n, int64_t vocab, uint64_t seed = 5) {
  std::mt19937_64 rng(seed);
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (auto& x : t) x = static_cast<int32_t>(rng() % static_cast<uint64_t>(std::min<int64_t>(vocab, 256)));
  return t;
}

std::vector<float> run(Backend& b, std::span<const int32_t> tokens) {
  std::vector<float> logits(static_cast<size_t>(b.config().vocab_size));
  b.forward(tokens, logits);
  return logits;
}

class CudaBackendVsCpu : public testing::TestWithParam<TestModel> {
 protected:
  void SetUp() override {
    if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
    model_ = make_test_model(GetParam());
    tolerance_ = is_bf16(model_) ? kBf16Tolerance : kF32Tolerance;
    dtype_ = is_bf16(model_) ? "bf16" : "f32";
  }

  std::unique_ptr<Backend> make(BackendKind kind, BackendOptions o = {}) {
    if (o.max_positions == 0) o.max_positions = 256;
    return make_backend(kind, model_, o);
  }

  std::string shape(const std::string& what) const {
    const ModelConfig& c = model_.config;
    return what + " L" + std::to_string(c.n_layers) + " H" + std::to_string(c.n_heads) + "/" +
           std::to_string(c.n_kv_heads) + " d" + std::to_string(c.head_dim);
  }

  Model model_;
  double tolerance_ = 0;
  std::string dtype_;
};

TEST_P(CudaBackendVsCpu, PrefillAndDecodeLogitsMatchCpu) {
  auto cpu = make(BackendKind::kCpu);
  auto gpu = make(BackendKind::kCuda);
  EXPECT_EQ(gpu->name(), "cuda");
  const std::vector<int32_t> tokens = test_tokens(90, model_.config.vocab_size);
  const auto prompt = std::span(tokens).first(61);
  EXPECT_OP("model_prefill", shape("n=61"), dtype_, run(*gpu, prompt), run(*cpu, prompt), tolerance_);
  EXPECT_EQ(gpu->position(), 61);
  for (size_t t = 61; t < tokens.size(); ++t) {  // decode steps, teacher-forced
    const auto one = std::span(tokens).subspan(t, 1);
    const std::vector<float> g = run(*gpu, one), c = run(*cpu, one);
    EXPECT_OP("model_decode", shape("pos=" + std::to_string(t)), dtype_, g, c, tolerance_);
  }
  EXPECT_EQ(gpu->position(), 90);
}

TEST_P(CudaBackendVsCpu, ChunkedPrefillAndSecondPrefillAgree) {
  BackendOptions one_chunk, small_chunks;
  small_chunks.cuda_prefill_chunk = 7;
  auto a = make(BackendKind::kCuda, one_chunk);
  auto b = make(BackendKind::kCuda, small_chunks);
  const std::vector<int32_t> tokens = test_tokens(50, model_.config.vocab_size, 9);
  const std::vector<float> whole = run(*a, tokens);
  EXPECT_OP("model_prefill_chunked", shape("n=50 chunk=7"), dtype_, run(*b, tokens), whole, tolerance_);
  // Full attention also takes a multi-token forward on a non-empty cache (chunk at pos0 > 0).
  auto c = make(BackendKind::kCuda, one_chunk);
  run(*c, std::span(tokens).first(20));
  EXPECT_OP("model_prefill_continued", shape("20+30"), dtype_, run(*c, std::span(tokens).subspan(20)), whole,
            tolerance_);
  // reset() forgets the cache.
  a->reset();
  EXPECT_OP("model_prefill_after_reset", shape("n=50"), dtype_, run(*a, tokens), whole, 0.0);
}

TEST_P(CudaBackendVsCpu, WindowModeMatchesCpuWindowMode) {
  BackendOptions o;
  o.static_set = {true, 4, 16, nullptr};
  auto cpu = make(BackendKind::kCpu, o);
  auto gpu = make(BackendKind::kCuda, o);
  const std::vector<int32_t> tokens = test_tokens(100, model_.config.vocab_size, 13);
  const auto prompt = std::span(tokens).first(30);  // longer than sinks + window: the ring is full at once
  EXPECT_OP("model_window_prefill", shape("S4 W16 n=30"), dtype_, run(*gpu, prompt), run(*cpu, prompt), tolerance_);
  for (size_t t = 30; t < tokens.size(); ++t) {  // 70 steps: the ring wraps several times
    const auto one = std::span(tokens).subspan(t, 1);
    const std::vector<float> g = run(*gpu, one), c = run(*cpu, one);
    EXPECT_OP("model_window_decode", shape("S4 W16 pos=" + std::to_string(t)), dtype_, g, c, tolerance_);
  }
  // A prompt shorter than sinks + window, then decoding into the wrap.
  auto cpu2 = make(BackendKind::kCpu, o);
  auto gpu2 = make(BackendKind::kCuda, o);
  EXPECT_OP("model_window_prefill", shape("S4 W16 n=9"), dtype_, run(*gpu2, std::span(tokens).first(9)),
            run(*cpu2, std::span(tokens).first(9)), tolerance_);
  for (size_t t = 9; t < 40; ++t) {
    const auto one = std::span(tokens).subspan(t, 1);
    const std::vector<float> g = run(*gpu2, one), c = run(*cpu2, one);
    EXPECT_OP("model_window_decode", shape("S4 W16 short pos=" + std::to_string(t)), dtype_, g, c, tolerance_);
  }
}

// A static set's prefill over several chunks keeps the residual stream in pinned host memory, a chunk at
// a time through two device slots on a copy stream (and its MLP in pieces): the logits are those of
// full attention's prefill, whose residual stays on the device, with the same chunks, bit for bit.
TEST_P(CudaBackendVsCpu, AStaticSetPrefillStreamsItsResidualThroughTheHost) {
  BackendOptions full;
  full.cuda_prefill_chunk = 7;
  BackendOptions windowed = full;
  windowed.static_set = {true, 4, 16, nullptr};
  auto a = make(BackendKind::kCuda, full);
  auto b = make(BackendKind::kCuda, windowed);
  const std::vector<int32_t> tokens = test_tokens(40, model_.config.vocab_size, 19);
  EXPECT_OP("model_prefill_host_residual", shape("S4 W16 n=40 chunk=7"), dtype_, run(*b, tokens), run(*a, tokens), 0.0);
  auto cpu = make(BackendKind::kCpu, windowed);
  const std::vector<float> c = run(*cpu, tokens);
  b->reset();
  EXPECT_OP("model_prefill_host_residual", shape("S4 W16 n=40 chunk=7 vs cpu"), dtype_, run(*b, tokens), c, tolerance_);
}

// Prebuilt contexts on the GPU (gpu_worker/serve): a static set keeps a copy of its window at the base
// and returns there (or to a later position its live window still holds) however far decoding went;
// the same steps then give the same logits bit for bit.
TEST_P(CudaBackendVsCpu, AStaticSetReturnsToItsBase) {
  BackendOptions o;
  o.static_set = {true, 4, 16, nullptr};
  auto gpu = make(BackendKind::kCuda, o);
  const std::vector<int32_t> tokens = test_tokens(120, model_.config.vocab_size, 17);
  auto step = [&](int64_t t) { return run(*gpu, std::span(tokens).subspan(static_cast<size_t>(t), 1)); };
  run(*gpu, std::span(tokens).first(40));
  EXPECT_FALSE(gpu->can_truncate_to(30));  // no base kept yet
  gpu->keep_base();
  std::vector<std::vector<float>> first;
  for (int64_t t = 40; t < 50; ++t) first.push_back(step(t));
  // Position 45's window [29, 45) is the copy's [29, 40) and the live ring's [40, 45).
  ASSERT_TRUE(gpu->can_truncate_to(45));
  gpu->truncate(45);
  for (int64_t t = 45; t < 50; ++t) EXPECT_OP("truncate_in_window", shape("S4 W16 45"), dtype_, step(t), first[t - 40], 0.0);
  for (int64_t t = 50; t < 100; ++t) step(t);  // the ring wraps three times past the base
  EXPECT_FALSE(gpu->can_truncate_to(45));
  EXPECT_FALSE(gpu->can_truncate_to(99));
  EXPECT_TRUE(gpu->can_truncate_to(100));
  EXPECT_THROW(gpu->truncate(45), Error);
  ASSERT_TRUE(gpu->can_truncate_to(40));
  gpu->truncate(40);
  EXPECT_EQ(gpu->position(), 40);
  for (int64_t t = 40; t < 50; ++t) EXPECT_OP("truncate_to_base", shape("S4 W16 40"), dtype_, step(t), first[t - 40], 0.0);
  gpu->reset();  // forgets the base
  run(*gpu, std::span(tokens).first(40));
  step(40);
  EXPECT_FALSE(gpu->can_truncate_to(40));
}

// Saved contexts: read_kv gives the CPU backend's K and V (post-RoPE, float32), and a cache written by
// write_kv (the sinks, then the window) decodes as the one it was read from, with a static set and with
// full attention.
TEST_P(CudaBackendVsCpu, ReadKvMatchesCpuAndWriteKvLoadsItBack) {
  const ModelConfig& c = model_.config;
  const std::vector<int32_t> tokens = test_tokens(80, c.vocab_size, 19);
  auto floats = [&](int64_t n) { return std::vector<float>(static_cast<size_t>(c.n_layers * c.n_kv_heads * n * c.head_dim)); };
  for (const bool windowed : {true, false}) {
    BackendOptions o;
    if (windowed) o.static_set = {true, 4, 16, nullptr};
    auto cpu = make(BackendKind::kCpu, o);
    auto gpu = make(BackendKind::kCuda, o);
    auto loaded = make(BackendKind::kCuda, o);
    run(*cpu, std::span(tokens).first(50));
    run(*gpu, std::span(tokens).first(50));
    const std::vector<std::pair<int64_t, int64_t>> ranges =
        windowed ? std::vector<std::pair<int64_t, int64_t>>{{0, 4}, {34, 50}} : std::vector<std::pair<int64_t, int64_t>>{{0, 50}};
    for (const auto& [b, e] : ranges) {
      std::vector<float> gk = floats(e - b), gv = floats(e - b), ck = floats(e - b), cv = floats(e - b);
      gpu->read_kv(b, e, gk, gv);
      cpu->read_kv(b, e, ck, cv);
      const std::string what = shape((windowed ? "S4 W16 " : "full ") + std::to_string(b) + ".." + std::to_string(e));
      EXPECT_OP("read_kv_k", what, dtype_, gk, ck, tolerance_);
      EXPECT_OP("read_kv_v", what, dtype_, gv, cv, tolerance_);
      loaded->write_kv(b, e, gk, gv);
    }
    EXPECT_EQ(loaded->position(), 50);
    for (size_t t = 50; t < 60; ++t) {
      const auto one = std::span(tokens).subspan(t, 1);
      EXPECT_OP("write_kv_decode", shape(windowed ? "S4 W16" : "full"), dtype_, run(*loaded, one), run(*gpu, one), 0.0);
    }
    if (windowed) {
      std::vector<float> k = floats(10), v = floats(10);
      EXPECT_THROW(gpu->read_kv(20, 30, k, v), Error);  // left the window
      std::vector<float> k26 = floats(26), v26 = floats(26);
      EXPECT_THROW(loaded->write_kv(4, 30, k26, v26), Error);  // more than one window
    }
  }
}

TEST_P(CudaBackendVsCpu, ObserverSeesTheSameQkv) {
  const ModelConfig& c = model_.config;
  std::map<std::pair<int64_t, int64_t>, std::vector<float>> seen[2];  // (layer, position) -> q|k|v
  auto observer = [&](int which) {
    return [&, which](const QkvChunk& chunk) {
      for (int64_t i = 0; i < chunk.n; ++i) {
        std::vector<float>& row = seen[which][{chunk.layer, chunk.position + i}];
        row.insert(row.end(), chunk.q + i * c.q_dim(), chunk.q + (i + 1) * c.q_dim());
        row.insert(row.end(), chunk.k + i * c.kv_dim(), chunk.k + (i + 1) * c.kv_dim());
        row.insert(row.end(), chunk.v + i * c.kv_dim(), chunk.v + (i + 1) * c.kv_dim());
      }
    };
  };
  BackendOptions o;
  o.cuda_prefill_chunk = 16;
  o.qkv_observer = observer(0);
  auto gpu = make(BackendKind::kCuda, o);
  o.qkv_observer = observer(1);
  auto cpu = make(BackendKind::kCpu, o);
  const std::vector<int32_t> tokens = test_tokens(40, c.vocab_size, 21);
  run(*gpu, tokens);
  run(*cpu, tokens);
  ASSERT_EQ(seen[0].size(), static_cast<size_t>(c.n_layers * 40));
  std::vector<float> all_gpu, all_cpu;
  for (const auto& [key, row] : seen[1]) {
    ASSERT_TRUE(seen[0].count(key)) << "layer " << key.first << " position " << key.second << " not observed";
    all_cpu.insert(all_cpu.end(), row.begin(), row.end());
    all_gpu.insert(all_gpu.end(), seen[0][key].begin(), seen[0][key].end());
  }
  EXPECT_OP("model_observed_qkv", shape("n=40"), dtype_, all_gpu, all_cpu, tolerance_);
}

// With BackendOptions::observe_kv_rows the observer gets K and V coded on the GPU (int8 keys, bf16
// values here: what an int8/bf16 store takes) instead of float32: the bytes the CPU's coders (common/
// wire_rows.h, as PrefillCapture uses them) make of the float32 K and V that the same backend, run
// without it, observes. Bit for bit: the coding is exact and the prefill deterministic.
TEST_P(CudaBackendVsCpu, ObserverGetsKvRowsCodedOnTheGpu) {
  const ModelConfig& c = model_.config;
  const KvWireFormat form{WireRows::kQ8, WireRows::kBF16};
  const size_t kb = static_cast<size_t>(c.n_kv_heads) * wire_row_bytes(form.key, c.head_dim);
  const size_t vb = static_cast<size_t>(c.n_kv_heads) * wire_row_bytes(form.value, c.head_dim);
  std::map<std::pair<int64_t, int64_t>, std::vector<std::byte>> seen[2];  // (layer, position) -> k | v bytes
  BackendOptions o;
  o.cuda_prefill_chunk = 16;
  o.observe_kv_rows = form;
  o.qkv_observer = [&](const QkvChunk& chunk) {
    ASSERT_NE(chunk.k_rows, nullptr);
    ASSERT_NE(chunk.v_rows, nullptr);
    EXPECT_EQ(chunk.k, nullptr);
    EXPECT_TRUE(chunk.rows_format == form);
    for (int64_t i = 0; i < chunk.n; ++i) {
      std::vector<std::byte>& row = seen[0][{chunk.layer, chunk.position + i}];
      row.insert(row.end(), chunk.k_rows + i * kb, chunk.k_rows + (i + 1) * kb);
      row.insert(row.end(), chunk.v_rows + i * vb, chunk.v_rows + (i + 1) * vb);
    }
  };
  auto coded = make(BackendKind::kCuda, o);
  o.observe_kv_rows.reset();
  o.qkv_observer = [&](const QkvChunk& chunk) {
    ASSERT_NE(chunk.k, nullptr);
    for (int64_t i = 0; i < chunk.n; ++i) {
      std::vector<std::byte> row(kb + vb);
      EXPECT_LT(encode_wire_rows(form.key, chunk.k + i * c.kv_dim(), c.n_kv_heads, c.head_dim, row.data()), 0);
      EXPECT_LT(encode_wire_rows(form.value, chunk.v + i * c.kv_dim(), c.n_kv_heads, c.head_dim, row.data() + kb), 0);
      seen[1][{chunk.layer, chunk.position + i}] = std::move(row);
    }
  };
  auto floats = make(BackendKind::kCuda, o);
  const std::vector<int32_t> tokens = test_tokens(40, c.vocab_size, 21);
  const std::vector<float> a = run(*coded, tokens), b = run(*floats, tokens);
  EXPECT_EQ(a, b) << "the two prefills differ: the rows cannot be compared";
  ASSERT_EQ(seen[0].size(), static_cast<size_t>(c.n_layers * 40));
  EXPECT_TRUE(seen[0] == seen[1]) << "K and V coded on the GPU differ from the CPU's coding of the same rows";
}

TEST_P(CudaBackendVsCpu, DeviceSamplingEqualsTheHostSampler) {
  auto gpu = make(BackendKind::kCuda);
  const std::vector<int32_t> tokens = test_tokens(20, model_.config.vocab_size, 3);
  std::vector<float> logits = run(*gpu, tokens);
  int32_t token = argmax(logits);
  const std::vector<SamplingParams> params = {{0.0f, 1.0f, 0}, {0.8f, 1.0f, 7}, {1.2f, 0.9f, 11}};
  for (uint64_t step = 1; step < 40; ++step) {
    const SamplingParams& p = params[step % params.size()];
    const int32_t next = gpu->decode_sample(token, p, step, logits);
    std::vector<float> copy = logits;
    EXPECT_EQ(next, Sampler(p).next_at(copy, step)) << "step " << step << " T " << p.temperature;
    token = next;
  }
}

INSTANTIATE_TEST_SUITE_P(Models, CudaBackendVsCpu,
                         testing::Values(TestModel::kSyntheticF32, TestModel::kTinyHfBf16, TestModel::kLlama3RopeF32),
                         model_name);

// An in-process remote part that holds every offloaded key and value and answers with exact attention
// over them: with it the offloaded mode must equal full attention (the "flat == full" check without
// processes; tests/mpi runs the real retrievers).
class ExactRemote final : public RemoteAttention {
 public:
  ExactRemote(const ModelConfig& c, int64_t sinks, int64_t window) : c_(c), sinks_(sinks), window_(window) {}

  QkvObserver observer() {
    return [this](const QkvChunk& chunk) {
      for (int64_t i = 0; i < chunk.n; ++i) {
        store(chunk.layer, chunk.position + i, chunk.k + i * c_.kv_dim(), chunk.v + i * c_.kv_dim());
      }
    };
  }

  void begin(int64_t layer, int64_t position, const float* q, int64_t evict_position, const float* k,
             const float* v) override {
    layer_ = layer;
    position_ = position;
    q_.assign(q, q + c_.q_dim());
    if (evict_position >= 0) {
      ++evictions_;
      EXPECT_EQ(evict_position, position - window_);
      store(layer, evict_position, k, v);
    }
  }

  void finish(int64_t layer, float* o, float* lse) override {
    EXPECT_EQ(layer, layer_);
    const int64_t end = std::max(sinks_, position_ + 1 - window_);  // offloaded: [sinks, end)
    const int64_t hd = c_.head_dim;
    std::vector<float> keys, values, scratch;
    for (int64_t h = 0; h < c_.n_heads; ++h) {
      const int64_t g = h / c_.group_size();
      keys.clear();
      values.clear();
      for (int64_t p = sinks_; p < end; ++p) {
        const auto it = kv_.find({layer, p});
        ASSERT_NE(it, kv_.end()) << "position " << p << " of layer " << layer << " never reached the remote side";
        keys.insert(keys.end(), it->second.begin() + g * hd, it->second.begin() + (g + 1) * hd);
        values.insert(values.end(), it->second.begin() + c_.kv_dim() + g * hd,
                      it->second.begin() + c_.kv_dim() + (g + 1) * hd);
      }
      scratch.resize(static_cast<size_t>(std::max<int64_t>(1, end - sinks_)));
      lse[h] = attend(q_.data() + h * hd, keys.data(), values.data(), static_cast<size_t>(end - sinks_),
                      static_cast<size_t>(hd), static_cast<size_t>(hd), c_.attn_scale(), scratch, o + h * hd);
    }
  }

  int64_t evictions() const { return evictions_; }

 private:
  void store(int64_t layer, int64_t position, const float* k, const float* v) {
    std::vector<float>& row = kv_[{layer, position}];
    row.assign(k, k + c_.kv_dim());
    row.insert(row.end(), v, v + c_.kv_dim());
  }

  const ModelConfig c_;
  const int64_t sinks_, window_;
  std::map<std::pair<int64_t, int64_t>, std::vector<float>> kv_;  // (layer, position) -> k | v
  std::vector<float> q_;
  int64_t layer_ = 0, position_ = 0, evictions_ = 0;
};

TEST(CudaBackend, OffloadedModeWithAnExactRemoteEqualsFullAttention) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  for (TestModel which : {TestModel::kSyntheticF32, TestModel::kTinyHfBf16}) {
    const Model model = make_test_model(which);
    const ModelConfig& c = model.config;
    BackendOptions full;
    full.max_positions = 200;
    auto reference = make_backend(BackendKind::kCuda, model, full);
    ExactRemote remote(c, 4, 8);
    BackendOptions offloaded = full;
    offloaded.static_set = {true, 4, 8, &remote};
    offloaded.qkv_observer = remote.observer();
    auto gpu = make_backend(BackendKind::kCuda, model, offloaded);
    const std::vector<int32_t> tokens = test_tokens(120, c.vocab_size, 17);
    const auto prompt = std::span(tokens).first(40);
    const std::string dtype = is_bf16(model) ? "bf16" : "f32";
    // The remote side computes in float32 from the same (bf16-rounded) K/V: only summation order differs.
    EXPECT_OP("model_offloaded_prefill", "S4 W8 n=40", dtype, run(*gpu, prompt), run(*reference, prompt), 1e-8);
    for (size_t t = 40; t < tokens.size(); ++t) {
      const auto one = std::span(tokens).subspan(t, 1);
      const std::vector<float> a = run(*gpu, one), b = run(*reference, one);
      EXPECT_OP("model_offloaded_decode", "S4 W8 pos=" + std::to_string(t), dtype, a, b, 1e-8);
    }
    EXPECT_EQ(remote.evictions(), c.n_layers * 80) << "every decode step evicts one token per layer";
  }
}

// With a static set and TrainListOptions, the prefill hands each layer's training lists and, with
// key_query_width, each offloaded key's best training rows of its group (GraphBuildParams::
// connect_query_lists) to on_layer. Checked against the q and k the observer sees: every id is valid and
// scores within rounding of the best (the GPU's GEMM rounds differently, so near-ties may go either way).
TEST(CudaBackend, PrefillFindsTrainingListsAndEachKeysBestTrainingQuery) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  for (TestModel which : {TestModel::kSyntheticF32, TestModel::kTinyHfBf16}) {
    const Model model = make_test_model(which);
    const ModelConfig& c = model.config;
    const int64_t n = 40, hd = c.head_dim, group = c.n_heads / c.n_kv_heads;
    const std::vector<int64_t> positions = {3, 9, 15, 21, 27, 33, 39};
    const auto nt = static_cast<int64_t>(positions.size());
    const int width = 4, key_width = 2;
    std::map<int64_t, std::vector<float>> q, k;  // layer -> [n][q_dim], [n][kv_dim]
    std::map<int64_t, std::pair<std::vector<int32_t>, std::vector<int32_t>>> got;  // layer -> lists, key queries
    BackendOptions o;
    o.max_positions = 100;
    o.cuda_prefill_chunk = 16;
    ExactRemote remote(c, 4, 8);
    o.static_set = {true, 4, 8, &remote};
    o.qkv_observer = [&](const QkvChunk& chunk) {
      remote.observer()(chunk);
      q[chunk.layer].insert(q[chunk.layer].end(), chunk.q, chunk.q + chunk.n * c.q_dim());
      k[chunk.layer].insert(k[chunk.layer].end(), chunk.k, chunk.k + chunk.n * c.kv_dim());
    };
    o.train_lists.positions = positions;
    o.train_lists.first = 4;
    o.train_lists.end = n - 8;
    o.train_lists.width = width;
    o.train_lists.key_query_width = key_width;
    const int64_t offloaded = o.train_lists.end - o.train_lists.first;
    o.train_lists.on_layer = [&](int64_t layer, const int32_t* lists, const int32_t* key_queries) {
      ASSERT_NE(key_queries, nullptr);
      got[layer] = {std::vector<int32_t>(lists, lists + c.n_heads * nt * width),
                    std::vector<int32_t>(key_queries, key_queries + c.n_kv_heads * offloaded * key_width)};
    };
    auto gpu = make_backend(BackendKind::kCuda, model, o);
    ASSERT_TRUE(gpu->computes_train_lists());
    run(*gpu, test_tokens(n, c.vocab_size, 23));
    ASSERT_EQ(static_cast<int64_t>(got.size()), c.n_layers);
    const double rel = is_bf16(model) ? 5e-2 : 1e-3;  // bf16 q and k on the GPU, float32 here
    for (const auto& [layer, ids] : got) {
      const std::vector<float>& ql = q[layer];
      const std::vector<float>& kl = k[layer];
      auto dot = [&](int64_t qh, int64_t position, int64_t g, int64_t key) {  // key: offloaded row
        double s = 0;
        for (int64_t d = 0; d < hd; ++d) {
          s += double(ql[position * c.q_dim() + qh * hd + d]) * kl[(o.train_lists.first + key) * c.kv_dim() + g * hd + d];
        }
        return s;
      };
      for (int64_t g = 0; g < c.n_kv_heads; ++g) {
        // Each key's best training rows of the group: row m * nt + j is query head g * group + m at positions[j].
        for (int64_t x = 0; x < offloaded; ++x) {
          std::vector<double> scores;
          for (int64_t m = 0; m < group; ++m) {
            for (int64_t j = 0; j < nt; ++j) scores.push_back(dot(g * group + m, positions[j], g, x));
          }
          std::vector<double> sorted = scores;
          std::sort(sorted.rbegin(), sorted.rend());
          const double tol = rel * (std::fabs(sorted.front()) + 1e-6);
          for (int r = 0; r < key_width; ++r) {
            const int32_t id = ids.second[(g * offloaded + x) * key_width + r];
            ASSERT_GE(id, 0);
            ASSERT_LT(id, group * nt);
            EXPECT_GE(scores[static_cast<size_t>(id)], sorted[static_cast<size_t>(r)] - tol)
                << "layer " << layer << " kv head " << g << " key " << x << " rank " << r;
          }
          EXPECT_NE(ids.second[(g * offloaded + x) * key_width], ids.second[(g * offloaded + x) * key_width + 1]);
        }
        // Each training query's best key (the head of its list).
        for (int64_t m = 0; m < group; ++m) {
          const int64_t h = g * group + m;
          for (int64_t j = 0; j < nt; ++j) {
            double best = -1e300;
            for (int64_t x = 0; x < offloaded; ++x) best = std::max(best, dot(h, positions[j], g, x));
            const int32_t first = ids.first[(h * nt + j) * width];
            ASSERT_GE(first, 0);
            ASSERT_LT(first, offloaded);
            EXPECT_GE(dot(h, positions[j], g, first), best - rel * (std::fabs(best) + 1e-6))
                << "layer " << layer << " head " << h << " training row " << j;
          }
        }
      }
    }
  }
}

TEST(CudaBackend, TimingHooksRunFromAFilledCache) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  const Model model = make_test_model(TestModel::kTinyHfBf16);
  BackendOptions o;
  o.max_positions = 300;
  auto gpu = make_backend(BackendKind::kCuda, model, o);
  gpu->fill_cache_for_timing(200, 1);
  EXPECT_EQ(gpu->position(), 200);
  const std::vector<double> ms = gpu->time_decode_steps(50);
  ASSERT_EQ(ms.size(), 50u);
  for (double m : ms) EXPECT_GT(m, 0.0);
  EXPECT_EQ(gpu->position(), 250);
  EXPECT_THROW(gpu->time_decode_steps(60), Error) << "past the capacity";
  // After timing, a normal step still works and yields finite logits.
  const int32_t t[1] = {5};
  for (float x : run(*gpu, t)) ASSERT_TRUE(std::isfinite(x));
}

TEST(CudaBackend, BadInputIsAnError) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  const Model model = make_test_model(TestModel::kSyntheticF32);
  BackendOptions o;
  o.max_positions = 16;
  auto gpu = make_backend(BackendKind::kCuda, model, o);
  std::vector<float> logits(static_cast<size_t>(model.config.vocab_size));
  const std::vector<int32_t> too_long(17, 1);
  EXPECT_THROW(gpu->forward(too_long, logits), Error);
  const std::vector<int32_t> bad_id = {1, static_cast<int32_t>(model.config.vocab_size)};
  EXPECT_THROW(gpu->forward(bad_id, logits), Error);
  EXPECT_EQ(gpu->position(), 0);
  o.max_positions = model.config.max_position_embeddings + 1;
  EXPECT_THROW(make_backend(BackendKind::kCuda, model, o), Error);
}

}  // namespace
}  // namespace ra
