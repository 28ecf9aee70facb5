#include "gpu_worker/offload/prefill_capture.h"

#include <algorithm>
#include <chrono>
#include <cstring>

#include "common/error.h"

namespace ra {

PrefillCapture::PrefillCapture(const ModelConfig& c, int64_t prompt_tokens, int64_t sinks, int64_t window,
                               int64_t max_train_queries, bool capture_queries, KvWireFormat kv_rows)
    : kv_dim_(c.kv_dim()),
      q_dim_(c.q_dim()),
      n_kv_heads_(c.n_kv_heads),
      head_dim_(c.head_dim),
      kv_rows_(kv_rows),
      k_row_bytes_(static_cast<size_t>(c.n_kv_heads) * wire_row_bytes(kv_rows.key, c.head_dim)),
      v_row_bytes_(static_cast<size_t>(c.n_kv_heads) * wire_row_bytes(kv_rows.value, c.head_dim)),
      prompt_tokens_(prompt_tokens),
      n_heads_(c.n_heads) {
  begin_ = std::min(sinks, prompt_tokens);
  end_ = std::max(begin_, prompt_tokens - window);
  if (capture_queries) {
    const int64_t n = prompt_tokens;
    const int64_t count = max_train_queries > 0 ? std::min(max_train_queries, n) : n;
    for (int64_t i = 0; i < count; ++i) train_positions_.push_back(i * n / count);
    window_rows_ = prompt_tokens - end_;
  }
  const auto layers = static_cast<size_t>(c.n_layers);
  k_.resize(layers);
  v_.resize(layers);
  q_.resize(layers);
  wq_.resize(layers);
  lists_.resize(layers);
  key_queries_.resize(layers);
  started_.assign(layers, 0);
}

size_t PrefillCapture::layer_bytes() const {
  const size_t kv = static_cast<size_t>(offloaded()) * (k_row_bytes_ + v_row_bytes_);
  const size_t queries = (train_positions_.size() + static_cast<size_t>(window_rows_)) * static_cast<size_t>(q_dim_);
  const size_t list_ids = static_cast<size_t>(n_heads_) * train_positions_.size() * static_cast<size_t>(list_width_);
  const size_t key_query_ids = static_cast<size_t>(n_kv_heads_ * offloaded() * key_query_width_);
  return kv + queries * sizeof(float) + (list_ids + key_query_ids) * sizeof(int32_t);
}

void PrefillCapture::allocate(size_t l) {
  {
    std::lock_guard lock(spare_mutex_);
    if (!spare_.empty()) {  // every row of them is overwritten by this layer's chunks
      LayerBuffers& b = spare_.back();
      k_[l].swap(b.k);
      v_[l].swap(b.v);
      q_[l].swap(b.q);
      wq_[l].swap(b.wq);
      spare_.pop_back();
    }
  }
  k_[l].resize(static_cast<size_t>(offloaded()) * k_row_bytes_);
  v_[l].resize(static_cast<size_t>(offloaded()) * v_row_bytes_);
  q_[l].resize(train_positions_.size() * static_cast<size_t>(q_dim_));
  wq_[l].resize(static_cast<size_t>(window_rows_ * q_dim_));
  started_[l] = 1;
}

QkvObserver PrefillCapture::observer() {
  return [this](const QkvChunk& chunk) { on_chunk(chunk); };
}

TrainListOptions PrefillCapture::train_list_options(int width, int key_query_width) {
  TrainListOptions t;
  t.positions = train_positions_;
  t.first = begin_;
  t.end = end_;
  t.width = width;
  t.key_query_width = key_query_width;
  t.on_layer = [this](int64_t layer, const int32_t* lists, const int32_t* key_queries) {
    on_lists(layer, lists, key_queries);
  };
  return t;
}

void PrefillCapture::expect_train_lists(int width, int key_query_width) {
  RA_REQUIRE(width > 0 && !train_positions_.empty(), "training lists of width {} over {} training positions", width,
             train_positions_.size());
  RA_REQUIRE(key_query_width >= 0, "{} key queries per key", key_query_width);
  list_width_ = width;
  key_query_width_ = key_query_width;
}

void PrefillCapture::on_lists(int64_t layer, const int32_t* lists, const int32_t* key_queries) {
  if (list_width_ == 0) return;  // not expected: the retrievers find their own
  const auto l = static_cast<size_t>(layer);
  lists_[l].assign(lists, lists + static_cast<size_t>(n_heads_) * train_positions_.size() * list_width_);
  if (key_query_width_ > 0) {
    const int64_t count = n_kv_heads_ * offloaded() * key_query_width_;
    RA_REQUIRE(count == 0 || key_queries != nullptr, "prefill capture: layer {} came without the key queries it "
               "expects", layer);
    key_queries_[l].assign(key_queries, key_queries + count);
  }
  if (on_layer_complete) on_layer_complete(layer);
}

void PrefillCapture::on_chunk(const QkvChunk& chunk) {
  const auto t0 = std::chrono::steady_clock::now();
  const auto l = static_cast<size_t>(chunk.layer);
  if (!started_[l]) allocate(l);
  const int64_t lo = std::max(begin_, chunk.position);
  const int64_t hi = std::min(end_, chunk.position + chunk.n);
  if (lo < hi) {
    take_rows(chunk, lo, hi, chunk.k, chunk.k_rows, kv_rows_.key, "key", k_[l]);
    take_rows(chunk, lo, hi, chunk.v, chunk.v_rows, kv_rows_.value, "value", v_[l]);
  }
  const int64_t wlo = std::max(end_, chunk.position);
  const int64_t whi = std::min(end_ + window_rows_, chunk.position + chunk.n);
  for (int64_t p = wlo; p < whi; ++p) {
    std::memcpy(wq_[l].data() + (p - end_) * q_dim_, chunk.q + (p - chunk.position) * q_dim_, q_dim_ * sizeof(float));
  }
  const auto first = std::lower_bound(train_positions_.begin(), train_positions_.end(), chunk.position);
  for (auto it = first; it != train_positions_.end() && *it < chunk.position + chunk.n; ++it) {
    const int64_t row = it - train_positions_.begin();
    std::memcpy(q_[l].data() + row * q_dim_, chunk.q + (*it - chunk.position) * q_dim_, q_dim_ * sizeof(float));
  }
  copy_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (chunk.position + chunk.n == prompt_tokens_ && list_width_ == 0 && on_layer_complete) {
    on_layer_complete(chunk.layer);
  }
}

void PrefillCapture::take_rows(const QkvChunk& chunk, int64_t lo, int64_t hi, const float* x, const std::byte* coded,
                               WireRows rows, const char* side, std::vector<std::byte>& out) {
  const size_t position_bytes = static_cast<size_t>(n_kv_heads_) * wire_row_bytes(rows, head_dim_);
  std::byte* dst = out.data() + static_cast<size_t>(lo - begin_) * position_bytes;
  const int64_t i = lo - chunk.position;  // the chunk's row of position lo
  if (coded != nullptr) {
    RA_REQUIRE(chunk.rows_format == kv_rows_,
               "prefill capture: layer {} came as {}/{} rows from the backend, the capture holds {}/{}", chunk.layer,
               wire_rows_name(chunk.rows_format.key), wire_rows_name(chunk.rows_format.value),
               wire_rows_name(kv_rows_.key), wire_rows_name(kv_rows_.value));
    std::memcpy(dst, coded + static_cast<size_t>(i) * position_bytes, static_cast<size_t>(hi - lo) * position_bytes);
    return;
  }
  RA_REQUIRE(x != nullptr, "prefill capture: layer {} came with neither float32 {}s nor coded rows", chunk.layer, side);
  // Every kv head's row of every position: [hi - lo][n_kv_heads] rows of head_dim.
  const int64_t bad = encode_wire_rows(rows, x + i * kv_dim_, (hi - lo) * n_kv_heads_, head_dim_, dst);
  RA_REQUIRE(bad < 0,
             "prefill capture: layer {}, position {}, kv head {}: the {} holds inf or NaN, which an int8 row cannot "
             "code (its scale is max |x| / 127)",
             chunk.layer, lo + bad / n_kv_heads_, bad % n_kv_heads_, side);
}

void PrefillCapture::release(int64_t layer) {
  const auto l = static_cast<size_t>(layer);
  LayerBuffers b;
  b.k.swap(k_[l]);
  b.v.swap(v_[l]);
  b.q.swap(q_[l]);
  b.wq.swap(wq_[l]);
  std::vector<int32_t>().swap(lists_[l]);
  std::vector<int32_t>().swap(key_queries_[l]);
  std::lock_guard lock(spare_mutex_);
  if (layer + 1 < n_layers()) spare_.push_back(std::move(b));  // the last layer's go (b's destructor)
}

}  // namespace ra
