#pragma once
// The CPU retriever's request loop (DESIGN §2–§3), independent of how its Channel is carried: the
// ra-cpu-retriever process runs it over shm or UCX, unit tests over the in-process channel.
//
// Per layer it owns the shards of its kv heads (head_shard.h). It answers:
//   kHello  -> checks protocol, ABI, geometry and plan digest; kHelloAck, or kError naming what differs
//   kBuild  -> builds that layer's shards from the prefill KV and training queries, on a background
//              thread (build_queue.h) while the loop takes the next layer; kBuildDone when built
//   kStep   -> appends the evicted token, then per owned query head: top-k search + exact partial
//              attention; kPartial with (lse, o) per head
//   kSaveShards / kLoadShards -> every layer's shards to / from one file (shard_file.h); kSaveShardsDone
//              with its size and checksum / kLoadShardsDone
//   kRewind -> session mode (serving): later evictions go to each layer's SessionTail, the shards keep
//              what their kBuild gave them; drops the tail's tokens at positions >= the payload's;
//              kRewindDone
//   kShutdown -> kShutdown back, and serve() returns
// Layouts are in transport/messages.h. A malformed request is answered with kError before serve()
// throws, so the worker learns why its retriever left.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/full_checks.h"
#include "cpu_retriever/build_queue.h"
#include "cpu_retriever/head_shard.h"
#include "cpu_retriever/query_ring.h"
#include "cpu_retriever/session_tail.h"
#include "transport/channel.h"
#include "common/process_usage.h"
#include "transport/hello.h"
#include "transport/messages.h"

namespace ra::retriever {

// The geometry the worker's kHello must match (transport/hello.h).
using ServiceGeometry = transport::HeadGeometry;

struct RetrieverServiceConfig {
  ServiceGeometry geometry;
  KvDtypes dtype = KvDtype::kBF16;  // the shards' keys and values (kv_dtype.h; int8 codes with a scale per row)
  std::vector<std::vector<int64_t>> owned_kv_heads;  // [layer] -> this retriever's kv heads, ascending
  ShardIndexParams index;
  int threads = 0;                                   // search threads per step; 0 = OpenMP default
  // Layers built at once (BuildQueue workers), each on max(1, threads / build_layers) threads.
  int build_layers = 1;
  // Query heads per graph traversal when index.graph_per_kv_head (a divisor of the group size; 0 = the
  // whole group): fewer share more work, more spread a layer's search over more threads.
  int search_group = 0;
  // With search_group 1: separate searches of one kv head's graph a thread steps in turn
  // (HeadShard::search_attend_interleaved; at most the group size). 0 = as many as give each thread
  // one work item per layer; 1 = one search at a time.
  int search_interleave = 0;
  int search_expand = 1;  // graph: nodes a search expands per step (SearchParams::expand)
  int64_t sinks = -1;                                // the GPU's sink tokens; -1: unknown (fewer checks)
  int64_t window = 0;                                // the GPU window W: evicted tokens' queries are kept
                                                     // W + 1 steps for the graph (0: none kept)
  uint64_t plan_digest = 0;                          // compared with the worker's at kHello
  // What kHelloAck tells the worker of this retriever's host and placement (transport/hello.h); the
  // service fills in `threads` (its search team's size). The process sets it: RetrieverService::set_report.
  transport::RetrieverReport report;
  std::string name = "retriever";                    // for logs and errors, e.g. "retriever rank 1 on host a"
  // The process's threads and RSS are sampled after the first kStep, every this many kSteps after it
  // and at the shutdown (RetrieverServiceStats::decode_usage); 0 = never.
  int64_t usage_sample_steps = 1024;
  // The full check after every kStep (full_check(); common/full_checks.h): on in debug builds and where
  // RA_FULL_CHECKS=1.
  bool full_checks = full_checks_enabled();
};

struct RetrieverServiceStats {
  int64_t steps = 0;
  int64_t distance_computations = 0;
  double build_seconds = 0;
  double search_seconds = 0;
  size_t memory_bytes = 0;  // shards' KV and indexes
  int64_t evicted = 0;             // tokens appended to this retriever's shards (per layer, summed)
  int64_t evicted_with_query = 0;  // of those, appended with their own queries (graph index)
  int64_t evicted_with_answers = 0;  // of those, with the queries' decode answers too (graph merges)
  // Graph tail merges, at the shutdown: keys merged into the graphs, keys still in their flat tails.
  int64_t merged_keys = 0, tail_keys = 0;
  int64_t layers_with_lists = 0;   // kBuilds that brought their training lists (found on the GPU)
  int64_t layers_loaded = 0;       // layers restored from a saved file (kLoadShards) instead of built
  double first_step_seconds = 0;   // the first kStep, parse to reply
  double slowest_step_seconds = 0; // the slowest kStep and its (step, layer)
  int64_t slowest_step = -1, slowest_step_layer = -1;
  double slowest_step_append_seconds = 0;  // of it: parsing and appending the evicted token
  double slowest_step_search_seconds = 0;  //        the searches and partial attention
  double append_seconds = 0;       // all kSteps: parsing and appending the evicted tokens
  double searching_seconds = 0;    //             the searches and partial attention
  int64_t hops = 0;                // graph nodes expanded, all query heads and steps
  int64_t query_heads_searched = 0;
  UsageRange decode_usage;         // the process over the decode steps (config usage_sample_steps)
};

class RetrieverService {
 public:
  explicit RetrieverService(RetrieverServiceConfig config);
  ~RetrieverService();

  // Serves `channel` until the worker sends kShutdown (returns) or the exchange fails (throws
  // PeerError, or ra::Error for a request it cannot serve after telling the worker with kError).
  void serve(transport::Channel& channel);

  const RetrieverServiceStats& stats() const { return stats_; }

  // Replaces config.report before serve(): the process learns some of it (whether its threads could be
  // pinned) only after the service has started its own threads.
  void set_report(transport::RetrieverReport report) { config_.report = std::move(report); }

 private:
  // Separate searches per work item when interleaving (search_interleave, or 0: derived from the
  // layer's entries and the threads).
  int64_t interleave_width(int64_t entries, int threads) const;
  // Throws ra::Error naming the step when its positions break the static / offloaded split (issue 20
  // item 2); shard_rows: the rows of the layer's shards (build + evicted).
  void check_positions(const transport::StepPayload& step, int64_t shard_rows) const;
  // The full check (common/full_checks.h; debug builds, RA_FULL_CHECKS=1), after the step's eviction.
  void full_check(const transport::StepPayload& step);
  // Records the layer's answers of this step (each owned query head's latest) for its eviction W steps on.
  void keep_answers(uint32_t layer, int64_t position);
  // Ids kept per query head and answer: what a merge uses of it (GraphBuildParams::Kq).
  int answer_width() const { return std::max(1, config_.index.graph.Kq); }
  void on_hello(transport::Channel& channel, uint64_t seq, std::span<const std::byte> payload);
  // A kBuild payload into its layer's shards (builds_' thread); throws on a malformed payload.
  transport::BuildDonePayload build_layer(std::span<const std::byte> payload);
  // Waits for every submitted build and sends their kBuildDone (before a step or the shutdown).
  void drain_builds(transport::Channel& channel);
  [[noreturn]] static void tell_worker_and_rethrow(transport::Channel& channel, uint64_t seq, const std::exception& e);
  void on_step(transport::Channel& channel, uint64_t seq, std::span<const std::byte> payload);
  void on_rewind(transport::Channel& channel, uint64_t seq, std::span<const std::byte> payload);
  // `ra prefill --save` / `ra serve --load`: every layer's shards to / from one file (shard_file.h).
  void on_save_shards(transport::Channel& channel, uint64_t seq, std::span<const std::byte> payload);
  void on_load_shards(transport::Channel& channel, uint64_t seq, std::span<const std::byte> payload);
  // A kSaveShards / kLoadShards payload's path; throws on a malformed payload.
  std::string shard_file_path(std::span<const std::byte> payload, const std::string& what,
                              transport::ShardFilePayload* request) const;
  // The layer's rings of recent queries and answers, empty, sized for the configuration.
  void reset_rings(uint32_t layer);

  RetrieverServiceConfig config_;
  std::vector<std::vector<std::unique_ptr<HeadShard>>> shards_;  // [layer][i] for owned_kv_heads[layer][i]
  std::vector<QueryRing> recent_q_;  // [layer]: owned query heads' queries of the last W + 1 positions
  std::vector<AnswerRing> recent_answers_;  // [layer]: their answers (graph merges only), same positions
  std::vector<SessionTail> session_;  // [layer]: a serving session's evicted tokens (after a kRewind)
  // [layer]: the first offloaded position: the build's first key, or (a prompt within the sinks and
  // window: no keys) the first token evicted after the sinks; -1 when neither is known (sinks unknown).
  // The offloaded positions held are [offload_start_, + rows): the build's, the evicted, the session's.
  std::vector<int64_t> offload_start_;
  std::vector<uint8_t> full_check_marks_;  // full_check's scratch
  bool session_mode_ = false;         // set by the first kRewind
  std::vector<ShardScratch> thread_scratch_;                     // one per search thread
  std::vector<SessionScratch> session_scratch_;                  // one per search thread
  std::vector<std::byte> in_, out_;                              // message buffers, reused
  std::vector<float> lse_, o_;                                   // [entries], [entries][head_dim]
  std::vector<SearchStats> entry_stats_;                         // [entries]
  std::string step_name_;                                        // "kStep from <worker>", for errors
  std::string build_source_;                                     // "kBuild from <worker>", for errors
  bool greeted_ = false;
  int build_threads_ = 1;        // each build's OpenMP team
  // Builds of different layers run at once: shards_' layer vectors are swapped in, and stats_'
  // build fields written, under this lock; the loop reads them only once builds_ is idle.
  std::mutex shards_mu_;
  RetrieverServiceStats stats_;  // build_seconds and memory_bytes are written by builds_' threads
  std::unique_ptr<BuildQueue> builds_;  // last: destroyed first, its thread uses the members above
};

// Empty when the two agree; else one clause per differing field: "n_layers: worker 4, retriever 6".
using transport::describe_hello_mismatch;

}  // namespace ra::retriever
