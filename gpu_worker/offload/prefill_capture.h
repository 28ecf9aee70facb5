#pragma once
// Collects, during the prefill, what the retrievers need to build their indexes (DESIGN §3, prefill
// steps 2–3): for every layer, K and V of the positions that will live on the CPU, [S, N − W), the
// post-RoPE queries of the training positions and, with them, the queries of the window positions
// [N − W, N) (from S at least): the graph links those tokens by their own queries once they are evicted.
// Feed observer() to BackendOptions::qkv_observer.
//
// K and V are held in the forms kBuild carries them (kv_rows: common/wire_rows.h; the launcher picks
// them from the retrievers' stores), coded once as the chunks arrive: bf16 halves a layer's bytes, int8
// about quarters them (what makes a million-token prefill fit the worker's RAM). A chunk from a backend
// that coded them already (QkvChunk::k_rows, on the GPU) is copied as it is; float32 chunks are coded
// here by the same rule (bf16: round to nearest even; int8: quantise_q8_row of exactly the values given).
//
// A layer's buffers are taken at its first chunk and given back by release(), so a prefill that ships
// each layer as soon as it is complete (PrefillShipper) holds a layer or two, not the whole prompt.
// Released buffers are kept for the next layer: fresh ones would be zeroed and page-faulted in by the
// kernel on the prefill's thread (1 GiB per layer at 128K of Llama-3-8B).
// on_layer_complete(l) runs, on the observer's thread, once the chunk holding position N − 1 of layer l
// has been copied in; or, once expect_train_lists() was called, when the backend hands over layer l's
// training lists (which it computes after the layer's last chunk: BackendOptions::train_lists).

#include <cstdint>
#include <functional>
#include <mutex>
#include <vector>

#include "gpu_worker/backend/backend.h"
#include "gpu_worker/model/model_config.h"

namespace ra {

class PrefillCapture {
 public:
  // prompt_tokens: N. max_train_queries: 0 = every prefill position trains; else that many positions,
  // evenly spaced over [0, N). capture_queries: false when the index needs none (key-only indexes).
  // kv_rows: the forms of the keys and values held (and shipped: RetrievalClient::kv_rows()).
  PrefillCapture(const ModelConfig& config, int64_t prompt_tokens, int64_t sinks, int64_t window,
                 int64_t max_train_queries, bool capture_queries, KvWireFormat kv_rows = {});

  QkvObserver observer();
  // The backend's training lists (BackendOptions::train_lists) for these positions and rows; call
  // expect_train_lists(width) before the prefill when the backend computes them.
  TrainListOptions train_list_options(int width, int key_query_width = 0);
  void expect_train_lists(int width, int key_query_width = 0);
  // Called with each layer's index once all of its rows are in (set before the prefill starts).
  std::function<void(int64_t layer)> on_layer_complete;

  int64_t n_layers() const { return static_cast<int64_t>(k_.size()); }
  int64_t first_offloaded() const { return begin_; }   // S
  int64_t offloaded() const { return end_ - begin_; }  // rows per layer
  int64_t train_rows() const { return static_cast<int64_t>(train_positions_.size()); }
  KvWireFormat kv_rows() const { return kv_rows_; }
  // [rows][n_kv_heads] rows of wire_row_bytes(kv_rows().key, head_dim) bytes, and of .value.
  const std::byte* keys(int64_t layer) const { return k_[static_cast<size_t>(layer)].data(); }
  const std::byte* values(int64_t layer) const { return v_[static_cast<size_t>(layer)].data(); }
  const float* train_queries(int64_t layer) const { return q_[static_cast<size_t>(layer)].data(); }  // [train][q_dim]
  // Queries of positions [first_offloaded() + offloaded(), N): [window_rows()][q_dim] (0 rows without queries).
  int64_t window_rows() const { return window_rows_; }
  const float* window_queries(int64_t layer) const { return wq_[static_cast<size_t>(layer)].data(); }
  // Training lists from the backend: [q head][train_rows()][list_width()] int32 ids of offloaded rows,
  // best first (-1: none); null when list_width() is 0 (the retrievers find them).
  int list_width() const { return list_width_; }
  const int32_t* train_lists(int64_t layer) const {
    return list_width_ > 0 ? lists_[static_cast<size_t>(layer)].data() : nullptr;
  }
  // Each offloaded key's best training rows of its group, from the backend: [n_kv_heads][offloaded()]
  // [key_query_width()] int32; null when key_query_width() is 0 (the retrievers find them).
  int key_query_width() const { return key_query_width_; }
  const int32_t* key_queries(int64_t layer) const {
    return key_query_width_ > 0 ? key_queries_[static_cast<size_t>(layer)].data() : nullptr;
  }
  // Frees a layer's buffers once shipped. Safe while another layer is being captured.
  void release(int64_t layer);  // the shipping thread, while another layer is captured
  // Bytes a layer's buffers take while held.
  size_t layer_bytes() const;
  // Time the prefill's thread spent copying chunks in (on_chunk), excluding on_layer_complete.
  double copy_seconds() const { return copy_seconds_; }

 private:
  void on_chunk(const QkvChunk& chunk);
  void on_lists(int64_t layer, const int32_t* lists, const int32_t* key_queries);
  void allocate(size_t layer);

  // Copies or codes one side's rows of positions [lo, hi) of the chunk into `out` (its row lo - begin_).
  void take_rows(const QkvChunk& chunk, int64_t lo, int64_t hi, const float* x, const std::byte* coded,
                 WireRows rows, const char* side, std::vector<std::byte>& out);

  int64_t kv_dim_, q_dim_;
  int64_t n_kv_heads_, head_dim_;
  KvWireFormat kv_rows_;
  size_t k_row_bytes_, v_row_bytes_;      // of one position (every kv head)
  int64_t prompt_tokens_;
  int64_t begin_, end_;                   // offloaded positions [begin_, end_)
  std::vector<int64_t> train_positions_;  // ascending
  int64_t window_rows_ = 0;               // positions [end_, end_ + window_rows_) when queries are captured
  std::vector<std::vector<std::byte>> k_, v_;  // [layer]: [rows][n_kv_heads] coded rows
  std::vector<std::vector<float>> q_, wq_;
  int64_t n_heads_ = 0;
  int list_width_ = 0;
  int key_query_width_ = 0;
  double copy_seconds_ = 0;
  std::vector<std::vector<int32_t>> lists_, key_queries_;
  std::vector<char> started_;             // [layer]: buffers allocated (a released layer stays started)
  struct LayerBuffers {
    std::vector<std::byte> k, v;
    std::vector<float> q, wq;
    std::vector<int32_t> lists;
  };
  std::mutex spare_mutex_;
  std::vector<LayerBuffers> spare_;       // released layers' buffers, sized for any layer
};

}  // namespace ra
