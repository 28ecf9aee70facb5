#include "gpu_worker/backend/cuda/cuda_weights.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "common/error.h"
#include "gpu_worker/backend/cuda/cuda_check.h"
#include "gpu_worker/backend/cuda/ops.h"

namespace ra::cuda {
namespace {

// Host float32 -> device T through a bounded float32 staging buffer.
class Uploader {
 public:
  explicit Uploader(cudaStream_t stream) : stream_(stream), staging_(kStagingFloats, "weight upload staging") {}

  template <typename T>
  void copy(const std::vector<float>& src, T* dst) {
    for (size_t off = 0; off < src.size(); off += kStagingFloats) {
      const size_t n = std::min(kStagingFloats, src.size() - off);
      RA_CUDA_CHECK(cudaMemcpyAsync(staging_.get(), src.data() + off, n * sizeof(float), cudaMemcpyHostToDevice, stream_));
      RA_CUDA_CHECK(from_float_array<T>(staging_.get(), dst + off, static_cast<int64_t>(n), stream_));
    }
  }

  void copy_floats(const std::vector<float>& src, float* dst) {
    RA_CUDA_CHECK(cudaMemcpyAsync(dst, src.data(), src.size() * sizeof(float), cudaMemcpyHostToDevice, stream_));
  }

 private:
  static constexpr size_t kStagingFloats = size_t{1} << 26;  // 256 MiB
  cudaStream_t stream_;
  DeviceBuffer<float> staging_;
};

template <typename T>
DeviceLayerWeights<T> allocate_layer(const ModelConfig& c, int64_t l) {
  const std::string p = "layer " + std::to_string(l) + " ";
  const auto D = static_cast<size_t>(c.hidden_size);
  const auto I = static_cast<size_t>(c.intermediate_size);
  const auto qkv_rows = static_cast<size_t>(c.q_dim() + 2 * c.kv_dim());
  DeviceLayerWeights<T> w;
  w.attn_norm = DeviceBuffer<float>(D, "attention norm");
  w.wqkv = DeviceBuffer<T>(qkv_rows * D, "qkv projection");
  w.wo = DeviceBuffer<T>(D * static_cast<size_t>(c.q_dim()), "output projection");
  w.ffn_norm = DeviceBuffer<float>(D, "ffn norm");
  w.wgu = DeviceBuffer<T>(2 * I * D, "gate/up projection");
  w.wdown = DeviceBuffer<T>(D * I, "down projection");
  return w;
}

}  // namespace

template <typename T>
int64_t DeviceWeights<T>::bytes() const {
  int64_t total = static_cast<int64_t>(embed.bytes() + final_norm.bytes() + lm_head.bytes());
  for (const auto& l : layers) {
    total += static_cast<int64_t>(l.attn_norm.bytes() + l.wqkv.bytes() + l.wo.bytes() + l.ffn_norm.bytes() +
                                  l.wgu.bytes() + l.wdown.bytes());
  }
  return total;
}

template <typename T>
DeviceWeights<T> upload_weights(const Model& model, cudaStream_t stream) {
  const ModelConfig& c = model.config;
  check_weight_shapes(model);
  const auto D = static_cast<size_t>(c.hidden_size);
  const auto I = static_cast<size_t>(c.intermediate_size);
  Uploader up(stream);
  DeviceWeights<T> w;
  w.embed = DeviceBuffer<T>(static_cast<size_t>(c.vocab_size) * D, "embedding");
  up.copy(model.weights.embed, w.embed.get());
  w.final_norm = DeviceBuffer<float>(D, "final norm");
  up.copy_floats(model.weights.final_norm, w.final_norm.get());
  if (!model.weights.lm_head.empty()) {
    w.lm_head = DeviceBuffer<T>(static_cast<size_t>(c.vocab_size) * D, "lm_head");
    up.copy(model.weights.lm_head, w.lm_head.get());
  }
  DeviceBuffer<T> tmp(I * D, "gate/up interleaving scratch");
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const LayerWeights& src = model.weights.layers[static_cast<size_t>(l)];
    DeviceLayerWeights<T> dst = allocate_layer<T>(c, l);
    up.copy_floats(src.attn_norm, dst.attn_norm.get());
    up.copy_floats(src.ffn_norm, dst.ffn_norm.get());
    up.copy(src.wq, dst.wqkv.get());
    up.copy(src.wk, dst.wqkv.get() + static_cast<size_t>(c.q_dim()) * D);
    up.copy(src.wv, dst.wqkv.get() + static_cast<size_t>(c.q_dim() + c.kv_dim()) * D);
    up.copy(src.wo, dst.wo.get());
    up.copy(src.w_down, dst.wdown.get());
    // gate row i -> row 2i, up row i -> row 2i + 1.
    const size_t row = D * sizeof(T);
    up.copy(src.w_gate, tmp.get());
    RA_CUDA_CHECK(cudaMemcpy2DAsync(dst.wgu.get(), 2 * row, tmp.get(), row, row, I, cudaMemcpyDeviceToDevice, stream));
    up.copy(src.w_up, tmp.get());
    RA_CUDA_CHECK(
        cudaMemcpy2DAsync(dst.wgu.get() + D, 2 * row, tmp.get(), row, row, I, cudaMemcpyDeviceToDevice, stream));
    w.layers.push_back(std::move(dst));
    RA_CUDA_CHECK(cudaStreamSynchronize(stream));  // tmp is reused by the next layer
  }
  return w;
}

template <typename T>
DeviceWeights<T> random_weights(const ModelConfig& c, uint64_t seed, cudaStream_t stream) {
  c.validate("random weights");
  const auto D = static_cast<int64_t>(c.hidden_size);
  const auto I = static_cast<int64_t>(c.intermediate_size);
  uint64_t next_seed = seed;
  auto fill = [&](T* p, int64_t n, int64_t fan_in) {
    RA_CUDA_CHECK(fill_random<T>(p, n, 1.0f / std::sqrt(static_cast<float>(fan_in)), next_seed++, stream));
  };
  auto ones = [&](float* p, int64_t n) { RA_CUDA_CHECK(fill_constant(p, n, 1.0f, stream)); };
  DeviceWeights<T> w;
  w.embed = DeviceBuffer<T>(static_cast<size_t>(c.vocab_size * D), "embedding");
  fill(w.embed.get(), c.vocab_size * D, D);
  w.final_norm = DeviceBuffer<float>(static_cast<size_t>(D), "final norm");
  ones(w.final_norm.get(), D);
  if (!c.tie_word_embeddings) {
    w.lm_head = DeviceBuffer<T>(static_cast<size_t>(c.vocab_size * D), "lm_head");
    fill(w.lm_head.get(), c.vocab_size * D, D);
  }
  for (int64_t l = 0; l < c.n_layers; ++l) {
    DeviceLayerWeights<T> dst = allocate_layer<T>(c, l);
    ones(dst.attn_norm.get(), D);
    ones(dst.ffn_norm.get(), D);
    fill(dst.wqkv.get(), (c.q_dim() + 2 * c.kv_dim()) * D, D);
    fill(dst.wo.get(), D * c.q_dim(), c.q_dim());
    fill(dst.wgu.get(), 2 * I * D, D);
    fill(dst.wdown.get(), D * I, I);
    w.layers.push_back(std::move(dst));
  }
  RA_CUDA_CHECK(cudaStreamSynchronize(stream));
  return w;
}

template struct DeviceWeights<float>;
template struct DeviceWeights<bfloat16>;
template DeviceWeights<float> upload_weights<float>(const Model&, cudaStream_t);
template DeviceWeights<bfloat16> upload_weights<bfloat16>(const Model&, cudaStream_t);
template DeviceWeights<float> random_weights<float>(const ModelConfig&, uint64_t, cudaStream_t);
template DeviceWeights<bfloat16> random_weights<bfloat16>(const ModelConfig&, uint64_t, cudaStream_t);

}  // namespace ra::cuda
