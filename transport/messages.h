#pragma once
// Message kinds and payload layouts between the GPU worker and a CPU retriever (DESIGN §3, §4).
// Every payload is a fixed little header struct followed by arrays (float32 unless stated: kBuild's
// key and value rows may be narrower), packed back to back in the order listed; shapes are stated next
// to each kind. "owned" heads are this retriever's shard of the layer (RunPlan::owned_kv_heads,
// launcher/plan/run_plan.h): its kv heads in ascending order, and for each of them the query heads of
// its GQA group, ascending.
//
//   kHello      worker → retriever   HelloPayload, then `plan_bytes` bytes of the plan's JSON text
//   kHelloAck   retriever → worker   HelloPayload (the retriever's own view; identical on success), then
//                                     RetrieverReportPayload, then `text_bytes` bytes of its JSON text:
//                                     the retriever's host and placement (hello.h: RetrieverReport)
//   kBuild      worker → retriever   BuildPayload, then for each owned kv head g:
//                                       keys   [n_keys] rows of head_dim in key_rows' form (WireRows,
//                                              common/wire_rows.h: float32, bf16 bits, or int8 codes
//                                              and a float32 scale), positions first_position + i,
//                                              then zero bytes to a multiple of 4 (wire_block_bytes)
//                                       values [n_keys] rows of head_dim in value_rows' form, padded
//                                              the same
//                                     then for each owned query head h:
//                                       train_q [n_train][head_dim] float32 (post-RoPE prefill queries)
//                                     then for each owned query head h:
//                                       window_q [n_window][head_dim] float32 (the queries of positions
//                                         first_position + n_keys + i: prefill tokens still in the GPU
//                                         window, whose keys come later as evictions)
//                                     then, when list_width > 0, for each owned query head h:
//                                       lists [n_train][list_width] int32 (each training query's top key
//                                         rows, best first, -1 = none; found on the GPU)
//                                     then, when key_query_width > 0, for each owned kv head:
//                                       key_queries [n_keys][key_query_width] int32 (each key's best
//                                         training rows of the kv head's group, [group q head][n_train]
//                                         order, best first; found on the GPU)
//   kBuildDone  retriever → worker   BuildDonePayload
//   kStep       worker → retriever   StepPayload, then
//                                       q [n_heads][head_dim] float32        (post-RoPE, every head)
//                                     and if evict_position >= 0:
//                                       k [n_kv_heads][head_dim] float32     (the evicted token, all heads)
//                                       v [n_kv_heads][head_dim] float32
//   kPartial    retriever → worker   PartialPayload, then
//                                       lse [n_entries] float32               (owned query heads, in order)
//                                       o   [n_entries][head_dim] float32
//   kShutdown   worker → retriever   no payload; the retriever answers kShutdown and exits 0
//   kRewind     worker → retriever   RewindPayload (serving, gpu_worker/serve): from now on the tokens
//                                     evicted to this retriever go to a session tail kept apart from the
//                                     shards, which then hold exactly what each layer's last kBuild gave
//                                     them (a prebuilt context); drops the session tail's tokens at
//                                     positions >= position. A kBuild empties its layer's session tail.
//   kRewindDone retriever → worker   RewindPayload, echoed
//   kSaveShards worker → retriever   ShardFilePayload (bytes, fnv1a64 unused), then `path_bytes` bytes of a
//                                     path: the retriever writes every layer's shards there, as built
//                                     (`ra prefill --save`; cpu_retriever/shard_file.h)
//   kSaveShardsDone retriever → worker  ShardFilePayload: the file's size and FNV-1a 64 (for the manifest)
//   kLoadShards worker → retriever   ShardFilePayload (the size and checksum the manifest holds), then the
//                                     path: the retriever checks and restores every layer's shards from it
//                                     in place of kBuilds (`ra serve --load`)
//   kLoadShardsDone retriever → worker  ShardFilePayload, echoed
//   kError      either way           UTF-8 text: why the sender is leaving

#include <cstdint>

#include "common/wire_rows.h"

namespace ra::transport {

// How kBuild's key and value rows travel, and their bytes: f32 4 dim, bf16 2 dim, int8 dim + 4
// (common/wire_rows.h, shared with the worker's capture and the saved contexts' layer files).
using ra::is_wire_rows;
using ra::wire_block_bytes;
using ra::wire_row_bytes;
using ra::wire_rows_name;
using ra::WireRows;

inline constexpr uint32_t kProtocolMagic = 0x31484152;  // "RAH1"
inline constexpr uint32_t kProtocolVersion = 8;  // 4: kRewind, kRewindDone; 5: BuildPayload.kv_bf16;
                                                 // 6: StepPayload.flags and .scan_budget, PartialPayload.recall_*;
                                                 // 7: kHelloAck carries the RetrieverReportPayload,
                                                 //    PartialPayload.received_ns / .replied_ns, kSaveShards / kLoadShards;
                                                 // 8: BuildPayload.key_rows / .value_rows (WireRows per side, int8
                                                 //    rows coded on the worker) replace .kv_bf16

enum class MessageKind : uint32_t {
  kHello = 1,
  kHelloAck = 2,
  kBuild = 3,
  kBuildDone = 4,
  kStep = 5,
  kPartial = 6,
  kShutdown = 7,
  kError = 8,
  kRewind = 9,
  kRewindDone = 10,
  kSaveShards = 11,
  kSaveShardsDone = 12,
  kLoadShards = 13,
  kLoadShardsDone = 14,
  kBenchPing = 100,  // ra bench transport: a kStep-sized request, answered by a kPartial-sized kBenchPong
  kBenchPong = 101,
  kBenchBulk = 102,     // ra bench transport --bulk-mib: a large payload, not answered
  kBenchBulkDone = 103, // after the bulk messages; the retriever answers with the bytes it received (uint64)
};

constexpr uint32_t to_wire(MessageKind kind) { return static_cast<uint32_t>(kind); }

struct HelloPayload {
  uint32_t magic = kProtocolMagic;
  uint32_t protocol_version = kProtocolVersion;
  uint32_t header_bytes = 0;   // sizeof(MessageHeader) on the sender: catches ABI differences
  uint32_t n_layers = 0;
  uint32_t n_heads = 0;
  uint32_t n_kv_heads = 0;
  uint32_t head_dim = 0;
  float scale = 0;             // score scale, DESIGN §4
  uint64_t plan_digest = 0;    // FNV-1a of the plan's canonical JSON text
  uint64_t plan_bytes = 0;     // bytes of plan JSON that follow (kHello only)
};

// kHelloAck's second part (issue 21 item 2): where the retriever runs and how it placed itself, from its
// own host's topology (the plan only holds the launcher's guess, made on its machine). The facts of
// variable length follow as a JSON object of `text_bytes` bytes (hello.h: write_hello_ack).
struct RetrieverReportPayload {
  uint32_t report_bytes = sizeof(RetrieverReportPayload);  // on the sender: catches another layout
  int32_t rank = 0;            // its MPI rank; 0 = not a rank (an in-process service)
  uint64_t pid = 0;            // its process id on its host
  int32_t numa_nodes = 0;      // NUMA nodes with CPUs on its host; 0 = unknown
  int32_t numa_node = -1;      // the one it bound itself to: index into those nodes; -1 = unbound
  int32_t threads = 0;         // its search threads (the OpenMP team of every kStep)
  uint32_t pinned = 0;         // 1: those threads are pinned, one per core of `cpus` (JSON)
  uint64_t text_bytes = 0;     // bytes of JSON text that follow
};

// The most best training queries per key a kBuild carries (index.graph_connect_query_lists's bound).
inline constexpr uint32_t kMaxKeyQueryWidth = 64;

struct BuildPayload {
  uint32_t layer = 0;
  uint32_t n_train = 0;        // training queries per owned query head
  int64_t first_position = 0;  // sequence position of key row 0 (the sink count)
  int64_t n_keys = 0;          // offloaded prefill tokens of this layer
  int64_t n_window = 0;        // window_q rows per owned query head (0 when the index takes no queries)
  uint32_t list_width = 0;     // > 0: each training query's top key rows follow, [owned q head][n_train][width]
  uint16_t key_rows = 0;       // WireRows of the keys: 0 float32, 1 bf16 bits, 2 int8 rows (codes, scale)
  uint16_t value_rows = 0;     // WireRows of the values; a retriever refuses a form its store cannot take
  uint32_t key_query_width = 0;  // > 0 (<= kMaxKeyQueryWidth): each key's best training rows follow,
                                 // [owned kv head][n_keys][width]
  uint32_t reserved = 0;
};

struct BuildDonePayload {
  uint32_t layer = 0;
  uint32_t reserved = 0;
  double build_seconds = 0;    // wall time this retriever spent building the layer
};

struct StepPayload {
  uint32_t layer = 0;
  int32_t k = 100;             // top-k per query head
  int32_t ef = 0;              // graph / HNSW beam; 0 = the index default
  int32_t nprobe = 0;          // IVF lists; 0 = the index default
  int64_t position = 0;        // sequence position of the token being decoded
  int64_t evict_position = -1; // position leaving the GPU window this step, or -1
  uint32_t flags = 0;          // kStepAuditRecall
  uint32_t scan_budget = 0;    // retrievers with scan budgets (index.scan_fraction): which one to search with
};

// StepPayload::flags: also measure each answer's recall against the exact top-k of the shard's rows
// (PartialPayload::recall_*; a full scan per query head, for accuracy benchmarks).
inline constexpr uint32_t kStepAuditRecall = 1;

struct RewindPayload {
  int64_t position = 0;        // session-tail tokens at positions >= this are dropped
};

struct ShardFilePayload {
  uint64_t bytes = 0;          // the file's size
  uint64_t fnv1a64 = 0;        // its FNV-1a 64 checksum
  uint64_t path_bytes = 0;     // bytes of path text that follow (requests only)
};

struct PartialPayload {
  uint32_t layer = 0;
  uint32_t n_entries = 0;      // owned query heads
  int64_t position = 0;        // echoes StepPayload::position
  int64_t keys_offloaded = 0;  // rows this retriever holds per kv head after the step's eviction
  int64_t distance_computations = 0;  // over all owned heads, this step
  double search_seconds = 0;   // wall time from request to reply, retriever side
  // With kStepAuditRecall: answer ids among the exact top-k, and the exact top-k's sizes, over all
  // owned heads (0 otherwise).
  int64_t recall_hits = 0;
  int64_t recall_wanted = 0;
  // The step's timeline on the retriever's steady clock (ns since its epoch: CLOCK_MONOTONIC, so
  // comparable with the worker's only on the same host): when its kStep was taken from the channel and
  // when this reply was handed to it. The worker splits its round trip with them (RetrievalStats).
  int64_t received_ns = 0;
  int64_t replied_ns = 0;
};

}  // namespace ra::transport
