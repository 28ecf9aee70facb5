#pragma once
// A prefilled context on disk (`ra prefill --save DIR`, `ra serve --load DIR`), so that a restart does
// not prefill the document again. One folder:
//
//   manifest.json     {"format": "ra-context", "version": 1, "identity": {...}, "tokens": [...],
//                      "files": {"<name>": {"bytes": N, "fnv1a64": "<16 hex digits>"}, ...}}
//                     identity: what the loading server must match (ContextIdentity, below).
//   worker-kv.bin     the worker's own KV (WorkerKvHeader, then per range: k, v
//                     [n_layers][n_kv_heads][end - begin][head_dim] float32): every position with full
//                     attention; the sinks and the window with a static set.
//   logits.bin        LogitsHeader, then [vocab_size] float32: the last token's logits (the first
//                     generated token of a prompt that is exactly the document).
//   layer-NNN.bin     one per layer, with retrievers only (saved_layers.h): LayerHeader, then keys and
//                     values [n_keys][n_kv_heads] rows of head_dim in the forms they were shipped in
//                     (LayerHeader::key_rows, value_rows: float32, bf16 or int8 rows; common/
//                     wire_rows.h), each block padded to 4 bytes, then train_q [n_train][n_heads *
//                     head_dim] and window_q [n_window][n_heads * head_dim] float32: exactly what the
//                     worker ships to the retrievers after a prefill (RetrievalClient::send_build).
//                     Loading without usable retriever shards ships them again and the retrievers build
//                     their indexes from them; the indexes themselves (graph adjacency, FAISS lists)
//                     are not saved here but below.
//   retriever-NNN.shards  one per retriever, written by it (cpu_retriever/shard_file.h): every layer's
//                     built shards, rows and indexes; the manifest's "retriever_shards" holds the shard
//                     plan they were made under. A server with the same retrievers, plan and mode
//                     restores them; any other rebuilds from the layer files.
//
// Every .bin starts with an 8-byte magic and a version; every file's size and FNV-1a 64 checksum are
// in the manifest and are checked before anything is used. Problems are ra::Error naming the file and
// the field (ContextFileError is one).

#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/error.h"
#include "common/fnv1a64.h"
#include "gpu_worker/model/model.h"

namespace ra::serve {

inline constexpr int kContextFormatVersion = 1;
// layer-NNN.bin's own version: 2 holds the rows in their wire forms (key_rows, value_rows); 1 held float32.
inline constexpr int kLayerFileVersion = 2;

// What a saved context was made with; a server loads it only when its own is the same (mode: the
// saved data must serve the server's mode, see compatible_modes()).
struct ContextIdentity {
  std::string model;           // the checkpoint's path or "demo" (shown, not compared)
  std::string model_digest;    // 16 hex digits: the config and a sample of the weights (model_digest())
  int64_t n_layers = 0, n_heads = 0, n_kv_heads = 0, head_dim = 0, vocab_size = 0;
  std::string mode;            // full, flat, ivf, hnsw, retrieval
  int64_t sinks = 0, window = 0;         // the static set (0 with full attention)
  bool queries = false;        // layer files hold training and window queries (the graph index needs them)
};

// The identity of `model` served in `mode`: the checkpoint, its digest and geometry; sinks, window and
// queries are left for the caller (0, 0, false: full attention).
ContextIdentity context_identity(const Model& model, const std::string& mode);

// FNV-1a 64 of the model's config and of a strided sample of its weights (every tensor's first,
// middle and last values; the embedding every 4099th value): tells checkpoints apart without
// reading gigabytes. "demo-<seed>"-like synthetic models hash the same way.
std::string model_digest(const Model& model);

using ra::Fnv1a64;

// Headers of the .bin files (host byte order; all ranks and saves of one build share an ABI).
struct WorkerKvHeader {
  char magic[8] = {'R', 'A', 'C', 'T', 'X', 'K', 'V', '1'};
  uint32_t version = kContextFormatVersion;
  uint32_t n_ranges = 0;       // then n_ranges {int64 begin, int64 end}, then the data
  int64_t n_layers = 0, n_kv_heads = 0, head_dim = 0;
};
struct LayerHeader {
  char magic[8] = {'R', 'A', 'C', 'T', 'X', 'L', 'Y', '1'};
  uint32_t version = kLayerFileVersion;
  uint32_t layer = 0;
  int64_t first_position = 0, n_keys = 0, kv_dim = 0, n_train = 0, n_window = 0, q_dim = 0;
  uint16_t key_rows = 0, value_rows = 0;  // WireRows of the keys and of the values (0 f32, 1 bf16, 2 int8)
  uint32_t reserved = 0;
};
struct LogitsHeader {
  char magic[8] = {'R', 'A', 'C', 'T', 'X', 'L', 'G', '1'};
  uint32_t version = kContextFormatVersion;
  uint32_t reserved = 0;
  int64_t vocab_size = 0;
};

// The retrievers' built shards in a save (manifest field "retriever_shards"): retriever r wrote files[r]
// (cpu_retriever/shard_file.h) holding owned_kv_heads[r][layer]. A server with the same retriever count,
// shard plan and mode restores them (kLoadShards) instead of building its indexes again.
struct SavedShards {
  std::vector<std::vector<std::vector<int64_t>>> owned_kv_heads;  // [retriever][layer] -> kv heads
  std::vector<std::string> files;                                 // [retriever]
};

// A file's manifest entry: its size and FNV-1a 64.
struct FileEntry {
  uint64_t bytes = 0;
  uint64_t fnv1a64 = 0;
};

// Writes one file of the folder, checksumming as it goes; close() records it for the manifest.
class ContextWriter {
 public:
  explicit ContextWriter(std::string dir);  // creates dir; throws when it holds a manifest already
  void open(const std::string& name);
  void write(const void* data, size_t bytes);
  void write_floats(const float* data, size_t n) { write(data, n * sizeof(float)); }
  void close();
  // A file of the folder that another process wrote (a retriever's shards), with its size and checksum.
  void record(const std::string& name, uint64_t bytes, uint64_t fnv1a64);
  // The retrievers' saved shards: their files (recorded) and the shard plan they were saved under.
  void set_retriever_shards(const SavedShards& shards) { shards_ = shards; }
  // Writes manifest.json last (a folder without one is not a saved context).
  void finish(const ContextIdentity& identity, std::span<const int32_t> tokens);
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_, name_;
  std::ofstream out_;
  Fnv1a64 hash_;
  uint64_t bytes_ = 0;
  nlohmann::ordered_json files_ = nlohmann::ordered_json::object();
  std::optional<SavedShards> shards_;
};

// A saved context, read and checked.
class ContextReader {
 public:
  // Reads DIR/manifest.json; throws naming the file and field when it is missing, malformed, of
  // another format or version, or when its identity differs from `expect` in any compared field.
  ContextReader(std::string dir, const ContextIdentity& expect);
  const ContextIdentity& identity() const { return identity_; }
  const std::vector<int32_t>& tokens() const { return tokens_; }
  // The whole file `name`, after its size and checksum were checked against the manifest.
  std::vector<std::byte> read(const std::string& name) const;
  std::string path(const std::string& name) const;
  // A file's size and checksum as the manifest lists them (the file itself is not read).
  FileEntry entry(const std::string& name) const;
  // The retrievers' saved shards, when the save has them.
  const std::optional<SavedShards>& retriever_shards() const { return shards_; }

 private:
  std::string dir_;
  ContextIdentity identity_;
  std::optional<SavedShards> shards_;
  std::vector<int32_t> tokens_;
  nlohmann::json files_;
};

// "layer-007.bin".
std::string layer_file(int64_t layer);
// "retriever-002.shards": retriever r's built shards (cpu_retriever/shard_file.h).
std::string retriever_shard_file(size_t retriever);
// DIR/name as an absolute path (a retriever may run in another working directory).
std::string absolute_path(const std::string& dir, const std::string& name);

// Whether data saved in mode `saved` serves mode `serving`: equal modes, or any two of flat, ivf and
// hnsw (their layer files hold keys and values only; retrieval's add the queries).
bool compatible_modes(const std::string& saved, const std::string& serving);

// Reads a header of type H from the front of `bytes` (file `path`), checking its magic and version.
template <typename H>
H read_header(std::span<const std::byte> bytes, const std::string& path) {
  H h;
  RA_REQUIRE(bytes.size() >= sizeof(H), "{}: {} bytes, shorter than its {}-byte header", path, bytes.size(), sizeof(H));
  std::memcpy(&h, bytes.data(), sizeof(H));
  const H fresh;
  RA_REQUIRE(std::memcmp(h.magic, fresh.magic, sizeof(h.magic)) == 0, "{}: field 'magic' is not '{}'", path,
             std::string(fresh.magic, sizeof(fresh.magic)));
  RA_REQUIRE(h.version == fresh.version, "{}: field 'version' is {}, this build reads {}", path, h.version,
             fresh.version);
  return h;
}

}  // namespace ra::serve
