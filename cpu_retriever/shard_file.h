#pragma once
// One retriever's built shards in one file (issue 18: `ra prefill --save` writes it, `ra serve --load`
// restores it in place of the kBuilds, so a restart rebuilds no index). Host byte order:
//
//   RecordHeader     magic "RASHFILE", version kShardFileVersion (shard_io.h)
//   uint32           layers L, then per layer:
//     uint32, int64    layer, its first offloaded position (RetrieverService's offload_start)
//     array<int64>     the retriever's kv heads of the layer, ascending (the shard plan it was saved with)
//     per kv head:     uint64 record bytes, then HeadShard::save's record
//   uint64           end mark
//
// Written to PATH.tmp, then renamed: a file at PATH is whole. Its size and FNV-1a 64 go back to the worker
// for the context's manifest, and loading checks both before the shards are used: a corrupt, truncated or
// foreign file is an ra::Error naming the file and the field, and the retriever keeps nothing of it.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "cpu_retriever/head_shard.h"

namespace ra::retriever {

struct ShardFileInfo {
  uint64_t bytes = 0;
  uint64_t fnv1a64 = 0;
};

// A retriever's layers as its service holds them: [layer] -> the shards of owned_kv_heads[layer].
struct ShardLayers {
  std::vector<std::vector<int64_t>> owned_kv_heads;            // [layer] -> kv heads, ascending
  std::vector<int64_t> offload_start;                          // [layer]
  std::vector<std::vector<std::unique_ptr<HeadShard>>> shards;  // [layer][i] for owned_kv_heads[layer][i]
};

// Writes a service's layers to `path`: shards[layer][i] of owned_kv_heads[layer][i], every shard in its
// as-built state (HeadShard::save refuses appended rows).
ShardFileInfo write_shard_file(const std::string& path, const std::vector<std::vector<int64_t>>& owned_kv_heads,
                               const std::vector<int64_t>& offload_start,
                               const std::vector<std::vector<std::unique_ptr<HeadShard>>>& shards);

// What a loaded shard must be: the service's geometry and index configuration.
struct ShardFileExpect {
  ShardFileInfo file;                                 // size and checksum from the manifest
  std::vector<std::vector<int64_t>> owned_kv_heads;   // this retriever's plan: must equal the saved one
  int64_t head_dim = 0, n_kv_heads = 0;
  int group_size = 0;
  KvDtypes dtype = KvDtype::kBF16;
  ShardIndexParams params;  // stagger_key is set per shard, as a build sets it
};

// Reads `path`, checks it against `expect` (size and checksum first, then every record) and returns its
// layers; throws ra::Error naming the file and what differs.
ShardLayers read_shard_file(const std::string& path, const ShardFileExpect& expect);

}  // namespace ra::retriever
