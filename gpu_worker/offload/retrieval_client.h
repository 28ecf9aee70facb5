#pragma once
// The GPU worker's side of the retrievers (DESIGN §3): the handshake, shipping each layer's offloaded
// prefill KV and training queries, and per decode step and layer the query out and the partials back
// (the backend merges them into its static partials with log-sum-exp weights). It implements
// RemoteAttention, so the backend drives it from inside its layer loop.
//
// Every wait has a deadline and watches the retrievers' liveness (transport/channel.h); a failure
// surfaces as transport::PeerError naming the retriever.

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "gpu_worker/backend/backend.h"
#include "gpu_worker/offload/prefill_capture.h"
#include "transport/channel.h"
#include "transport/hello.h"
#include "transport/messages.h"

namespace ra {

// The geometry the retrievers must match at the handshake (transport/hello.h).
using RetrievalGeometry = transport::HeadGeometry;

struct RetrievalClientOptions {
  RetrievalGeometry geometry;
  // owned_kv_heads[r][layer]: retriever r's kv heads of that layer, ascending (the shard plan).
  std::vector<std::vector<std::vector<int64_t>>> owned_kv_heads;
  int top_k = 100;
  int ef = 0;
  int nprobe = 0;
  std::chrono::milliseconds step_timeout{60000};    // one layer's round trip
  std::chrono::milliseconds build_timeout{600000};  // shipping and building one layer's indexes
  // The forms kBuild carries keys and values in (common/wire_rows.h), one per side: what the retrievers'
  // stores keep, coded once on the worker (launcher/ranks/retriever_setup.h: kv_wire_format): int8 rows
  // for an int8 store, bf16 for a bf16 store of a bf16 model's KV, else float32. send_build takes the
  // rows in these forms (PrefillCapture holds them so).
  KvWireFormat kv_rows;
  // The GPU's static set (StaticSetOptions): with window > 0 and sinks >= 0, every reply's count of
  // offloaded keys held must be what the split leaves at that position, max(0, p + 1 - W - S) (issue 20
  // item 2: the worker's own check that the two sets cover [0, p] with no gap or repeat, beside the
  // retrievers' check of the positions they are sent). window 0: unchecked.
  int64_t sinks = -1;
  int64_t window = 0;
  // Every kStep asks the retrievers to measure each answer's recall against the exact top-k
  // (kStepAuditRecall: a full scan per query head; accuracy benchmarks).
  bool audit_recall = false;
  int scan_budget = 0;  // retrievers with several scan budgets: which one (StepPayload::scan_budget)
};

// One layer's counters (RetrievalStats::layers).
struct LayerRetrievalStats {
  int64_t distance_computations = 0;  // keys scored, all query heads and steps
  int64_t keys_offered = 0;           // sum over steps and query heads of the offloaded keys held then
  int64_t recall_hits = 0;            // with audit_recall: answers' ids among the exact top-k
  int64_t recall_wanted = 0;          //                    the exact top-k's sizes
};

// Per-run counters (DESIGN §5: every run reports these).
struct RetrievalStats {
  int64_t steps = 0;                   // (token, layer) round trips
  double wait_seconds = 0;             // worker time blocked in finish(): transport + retrieval not hidden
  double remote_seconds = 0;           // slowest retriever's own time per round trip, summed
  int64_t distance_computations = 0;   // all heads, all steps
  int64_t query_heads_searched = 0;    // for keys scanned per query = distance_computations / this
  double build_seconds = 0;            // from the first kBuild sent to the last kBuildDone received
  int64_t build_bytes = 0;             // kBuild payload bytes sent, all retrievers
  int64_t offloaded_keys = 0;          // per kv head, at the latest step
  std::vector<LayerRetrievalStats> layers;  // [n_layers]
  // Where a round trip's time goes (the decode breakdown; issue 16 item 6), summed over steps:
  double round_trip_seconds = 0;      // begin()'s first send to the last partial read in finish()
  double between_layers_seconds = 0;  // finish() of layer l to begin() of layer l + 1 in one token: the
                                      // worker's own per-layer work (GPU, launches, copies) between trips
  // The round trip of the retriever that replied last, split by its timestamps (PartialPayload::
  // received_ns / replied_ns): request out until it took the kStep (transport and its wake-up), its own
  // time, reply until every partial was read (transport and the worker's wake-up). Same-host clocks only:
  // steps whose timestamps do not fall inside the worker's round trip are not split (timeline_skipped).
  double q_out_seconds = 0, retriever_seconds = 0, partial_back_seconds = 0;
  int64_t timeline_steps = 0, timeline_skipped = 0;
};

class RetrievalClient final : public RemoteAttention {
 public:
  // channels[r] reaches retriever r; they must outlive the client.
  RetrievalClient(std::vector<transport::Channel*> channels, RetrievalClientOptions options);

  // kHello to every retriever; waits for each kHelloAck and keeps its report (reports()). Throws
  // PeerError naming the retriever and every differing field when a retriever refuses, or when its ack
  // is of another protocol or malformed (transport::read_hello_ack).
  void handshake(uint64_t plan_digest, const std::string& plan_text);
  // After handshake(): what each retriever said of its host and placement, [r] for channels[r].
  const std::vector<transport::RetrieverReport>& reports() const { return reports_; }

  // Ships layer `layer`'s offloaded prefill rows and its training queries to the owners:
  //   keys, values: [n_keys][n_kv_heads] rows of head_dim in the forms options.kv_rows names (.key,
  //                 .value; wire_row_bytes each), positions first_position + i (PrefillCapture::keys)
  //   train_q:      [n_train][n_heads * head_dim] float32 (may be null when n_train == 0)
  //   window_q:     [n_window][n_heads * head_dim] float32, positions first_position + n_keys + i: the
  //                 queries of the tokens still in the window (may be null when n_window == 0)
  //   lists:        [n_heads][n_train][list_width] int32, each training query's top key rows (found on the
  //                 GPU: BackendOptions::train_lists), or null (list_width 0): the retrievers find them
  //   key_queries:  [n_kv_heads][n_keys][key_query_width] int32, each key's best training rows of its kv
  //                 group (TrainListOptions::key_query_width), or null (width 0): the retrievers find them
  void send_build(int64_t layer, int64_t first_position, int64_t n_keys, const std::byte* keys, const std::byte* values,
                  int64_t n_train, const float* train_q, int64_t n_window = 0, const float* window_q = nullptr,
                  int list_width = 0, const int32_t* lists = nullptr, int key_query_width = 0,
                  const int32_t* key_queries = nullptr);
  // Waits for every layer's kBuildDone.
  void wait_builds();

  void begin(int64_t layer, int64_t position, const float* q, int64_t evict_position, const float* k,
             const float* v) override;
  void finish(int64_t layer, float* o, float* lse) override;

  // Serving (kRewind): from now on evicted tokens go to each retriever's session tail, and its tokens at
  // positions >= `position` are dropped; waits for every kRewindDone. Throws PeerError naming the
  // retriever that fails or answers otherwise.
  void rewind(int64_t position, std::chrono::milliseconds timeout);

  // Saved contexts (issue 18): every retriever writes its built shards to paths[r] (`ra prefill --save`;
  // cpu_retriever/shard_file.h) and answers with the file's size and checksum, returned in order; or
  // restores them from paths[r], checked against files[r] (`ra serve --load`), in place of the kBuilds.
  // Throws PeerError naming the retriever that fails (its reason: the file and the field).
  std::vector<transport::ShardFilePayload> save_shards(const std::vector<std::string>& paths,
                                                       std::chrono::milliseconds timeout);
  void load_shards(const std::vector<std::string>& paths, const std::vector<transport::ShardFilePayload>& files,
                   std::chrono::milliseconds timeout);
  // The forms send_build takes keys and values in (RetrievalClientOptions::kv_rows).
  KvWireFormat kv_rows() const { return options_.kv_rows; }
  // The shard plan: owned_kv_heads[r][layer] (RetrievalClientOptions).
  const std::vector<std::vector<std::vector<int64_t>>>& owned_kv_heads() const { return options_.owned_kv_heads; }
  size_t retrievers() const { return channels_.size(); }

  // The search knobs of the next steps (options top_k, ef, nprobe, scan_budget; retrievers with scan
  // budgets ignore ef and nprobe).
  void set_knobs(int top_k, int ef, int nprobe, int scan_budget = 0);

  // kShutdown to every retriever, each acknowledged within `timeout`. Never throws (best effort).
  void shutdown(std::chrono::milliseconds timeout) noexcept;

  const RetrievalStats& stats() const { return stats_; }
  void reset_stats();  // counters back to zero (a benchmark's rows)

 private:
  transport::MessageHeader expect(size_t r, transport::MessageKind kind, transport::Deadline deadline);

  std::vector<transport::Channel*> channels_;
  RetrievalClientOptions options_;
  std::vector<std::vector<std::vector<int64_t>>> owned_q_heads_;  // [r][layer] -> query heads, ascending
  uint64_t seq_ = 0;
  int64_t builds_pending_ = 0;
  transport::SteadyClock::time_point build_started_;
  std::vector<size_t> active_;      // retrievers asked in the current step
  int64_t step_position_ = 0;
  int64_t step_layer_ = -1;
  transport::SteadyClock::time_point step_started_;
  transport::SteadyClock::time_point step_finished_;  // the last finish()'s return
  std::vector<std::byte> out_, in_;  // message buffers, reused
  std::vector<std::string> partial_names_;  // "kPartial from <peer>" per retriever, for WireReader errors
  std::vector<transport::RetrieverReport> reports_;  // [r], from the handshake
  RetrievalStats stats_;
};

}  // namespace ra
