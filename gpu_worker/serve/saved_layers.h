#pragma once
// A saved context's layer files (context_files.h: layer-NNN.bin): each layer's offloaded keys and values,
// in the forms they were shipped in (common/wire_rows.h), and its training and window queries: what the
// worker sends the retrievers after a prefill. `ra prefill --save` writes them as the layers complete;
// a load that cannot restore the retrievers' shards reads them and ships them again.

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "common/wire_rows.h"
#include "gpu_worker/model/model_config.h"
#include "gpu_worker/offload/prefill_capture.h"
#include "gpu_worker/serve/context_files.h"

namespace ra::serve {

// Writes layer `layer` of `capture` (before the layer is shipped and released) as layer_file(layer).
void save_layer(ContextWriter& writer, const PrefillCapture& capture, int64_t layer, const ModelConfig& mc);

// What a loading server expects of every layer file.
struct LayerExpectation {
  int64_t first_position = 0, n_keys = 0;  // the rows this server's split offloads
  std::string split;                       // why, for errors: "17 tokens with sinks 4 and window 8"
  std::string mode;                        // this server's mode ...
  bool needs_queries = false;              // ... and whether its index trains on queries
  KvWireFormat kv_rows;                    // the forms its retrievers take (RetrievalClient::kv_rows)
};

// One layer file, read, checked against the model and `expect`, with its rows in the forms expect.kv_rows
// names: as saved when they match; else re-coded, as a fresh prefill would have coded them (float32 and
// bf16 rows decode exactly). int8 rows cannot be undone: a file of int8 rows loads only into a server
// whose retrievers take int8 rows (int8 stores). Problems are ra::Error naming the file and the field.
class SavedLayer {
 public:
  SavedLayer(const ContextReader& reader, int64_t layer, const ModelConfig& mc, const LayerExpectation& expect);

  const LayerHeader& header() const { return h_; }
  // [n_keys][n_kv_heads] rows of head_dim in expect.kv_rows' forms (.key, .value).
  const std::byte* keys() const { return keys_; }
  const std::byte* values() const { return values_; }
  // [n_train][q_dim] and [n_window][q_dim] float32; null when there are none.
  const float* train_queries() const { return h_.n_train > 0 ? train_ : nullptr; }
  const float* window_queries() const { return h_.n_window > 0 ? window_ : nullptr; }

 private:
  // The rows of one side at `at` in form `saved`, in form `wanted` (re-coded into `coded` if they differ).
  const std::byte* side_rows(const std::string& path, const char* field, const char* side, WireRows saved,
                             WireRows wanted, const std::byte* at, const ModelConfig& mc, std::vector<std::byte>& coded);

  LayerHeader h_;
  std::vector<std::byte> bytes_;  // the whole file
  std::vector<std::byte> keys_coded_, values_coded_;
  const std::byte* keys_ = nullptr;
  const std::byte* values_ = nullptr;
  const float* train_ = nullptr;
  const float* window_ = nullptr;
};

}  // namespace ra::serve
