#include "gpu_worker/serve/saved_layers.h"

#include <fmt/format.h>

#include "common/error.h"

namespace ra::serve {

void save_layer(ContextWriter& writer, const PrefillCapture& capture, int64_t layer, const ModelConfig& mc) {
  LayerHeader h;
  h.layer = static_cast<uint32_t>(layer);
  h.first_position = capture.first_offloaded();
  h.n_keys = capture.offloaded();
  h.kv_dim = mc.kv_dim();
  h.n_train = capture.train_rows();
  h.n_window = capture.window_rows();
  h.q_dim = mc.q_dim();
  h.key_rows = static_cast<uint16_t>(capture.kv_rows().key);
  h.value_rows = static_cast<uint16_t>(capture.kv_rows().value);
  const int64_t rows = h.n_keys * mc.n_kv_heads;  // of head_dim, per side
  writer.open(layer_file(layer));
  writer.write(&h, sizeof(h));
  const uint8_t zeros[4] = {};
  for (const auto& [data, form] : {std::pair{capture.keys(layer), capture.kv_rows().key},
                                   std::pair{capture.values(layer), capture.kv_rows().value}}) {
    const size_t bytes = static_cast<size_t>(rows) * wire_row_bytes(form, mc.head_dim);
    writer.write(data, bytes);
    writer.write(zeros, wire_block_bytes(form, rows, mc.head_dim) - bytes);  // the next block stays aligned
  }
  writer.write_floats(capture.train_queries(layer), static_cast<size_t>(h.n_train * h.q_dim));
  writer.write_floats(capture.window_queries(layer), static_cast<size_t>(h.n_window * h.q_dim));
  writer.close();
}

SavedLayer::SavedLayer(const ContextReader& reader, int64_t layer, const ModelConfig& mc,
                       const LayerExpectation& expect) {
  const std::string name = layer_file(layer), path = reader.path(name);
  bytes_ = reader.read(name);
  h_ = read_header<LayerHeader>(bytes_, path);
  const LayerHeader& h = h_;
  RA_REQUIRE(h.layer == layer, "{}: field 'layer' is {}", path, h.layer);
  RA_REQUIRE(h.first_position == expect.first_position && h.n_keys == expect.n_keys,
             "{}: fields 'first_position', 'n_keys' are {}, {}; {} offload {} rows from {}", path, h.first_position,
             h.n_keys, expect.split, expect.n_keys, expect.first_position);
  RA_REQUIRE(h.kv_dim == mc.kv_dim() && h.q_dim == mc.q_dim(), "{}: fields 'kv_dim', 'q_dim' are {}, {}; the "
             "model has {}, {}", path, h.kv_dim, h.q_dim, mc.kv_dim(), mc.q_dim());
  RA_REQUIRE(h.n_train >= 0 && h.n_window >= 0 && (h.n_train > 0 || !expect.needs_queries),
             "{}: field 'n_train' is {}: mode {} builds its index from training queries", path, h.n_train,
             expect.mode);
  RA_REQUIRE(is_wire_rows(h.key_rows) && is_wire_rows(h.value_rows),
             "{}: fields 'key_rows', 'value_rows' are {}, {}: 0 (f32), 1 (bf16) or 2 (int8) expected", path,
             h.key_rows, h.value_rows);
  const auto key_form = static_cast<WireRows>(h.key_rows), value_form = static_cast<WireRows>(h.value_rows);
  const int64_t rows = h.n_keys * mc.n_kv_heads;
  const size_t key_bytes = wire_block_bytes(key_form, rows, mc.head_dim);
  const size_t value_bytes = wire_block_bytes(value_form, rows, mc.head_dim);
  const auto queries = static_cast<size_t>((h.n_train + h.n_window) * h.q_dim);
  const size_t want = sizeof(h) + key_bytes + value_bytes + queries * sizeof(float);
  RA_REQUIRE(bytes_.size() == want, "{}: {} bytes, its header describes {}", path, bytes_.size(), want);
  const std::byte* at = bytes_.data() + sizeof(h);
  keys_ = side_rows(path, "key_rows", "keys", key_form, expect.kv_rows.key, at, mc, keys_coded_);
  values_ = side_rows(path, "value_rows", "values", value_form, expect.kv_rows.value, at + key_bytes, mc,
                      values_coded_);
  train_ = reinterpret_cast<const float*>(at + key_bytes + value_bytes);  // 4-aligned: the blocks are padded
  window_ = train_ + h.n_train * h.q_dim;
}

const std::byte* SavedLayer::side_rows(const std::string& path, const char* field, const char* side, WireRows saved,
                                       WireRows wanted, const std::byte* at, const ModelConfig& mc,
                                       std::vector<std::byte>& coded) {
  if (saved == wanted) return at;
  RA_REQUIRE(saved != WireRows::kQ8,
             "{}: field '{}' is int8: the {} were saved coded for int8 stores, and this server's retrievers take {} "
             "{}; int8 rows cannot be made {} again (serve with int8 stores, or prefill the document again)",
             path, field, side, wire_rows_name(wanted), side, wire_rows_name(wanted));
  const int64_t rows = h_.n_keys * mc.n_kv_heads;
  coded.resize(static_cast<size_t>(rows) * wire_row_bytes(wanted, mc.head_dim));
  const int64_t bad = transcode_wire_rows(saved, at, wanted, rows, mc.head_dim, coded.data());
  RA_REQUIRE(bad < 0, "{}: the {} at position {}, kv head {} hold inf or NaN, which {} rows cannot code", path, side,
             h_.first_position + bad / mc.n_kv_heads, bad % mc.n_kv_heads, wire_rows_name(wanted));
  return coded.data();
}

}  // namespace ra::serve
