#pragma once
// The measured exchange of `ra bench transport` (issue #4 item 7): one decode layer's worker↔retriever
// round trip with the search replaced by a no-op, so only the transport's own cost shows.
//
// Per iteration (= one layer) the worker sends one request to each of the R retrievers, each retriever
// answers at once, and the worker waits for all R answers. Sizes follow the real kStep / kPartial
// layouts of transport/messages.h (the kinds are kBenchPing / kBenchPong, so a bench message can never be
// mistaken for a pipeline one):
//   request (kBenchPing, worker → each retriever):
//     StepPayload, q [n_heads][head_dim] float32, and with `evict`: k, v [n_kv_heads][head_dim] float32
//   reply (kBenchPong, retriever → worker), for the retriever's n owned query heads:
//     PartialPayload, lse [n] float32, o [n][head_dim] float32
// Heads are owned as in the pipeline's shard plan: kv heads split as evenly as possible over the
// retrievers (the first n_kv_heads % R get one more), each with its GQA group of query heads.

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "transport/channel.h"

namespace ra::bench {

struct Geometry {
  int n_heads = 32;     // query heads
  int n_kv_heads = 8;   // key/value heads; n_heads must be a multiple
  int head_dim = 128;   // floats per head vector
  bool evict = true;    // the request carries one evicted token's k and v (every step past the window does)
};

// Throws ra::Error naming the bad field; R must be in [1, n_kv_heads].
void check_geometry(const Geometry& g, int n_retrievers);

// Query heads owned by retriever `index` (0-based) of `n_retrievers`.
int owned_query_heads(const Geometry& g, int index, int n_retrievers);

// Payload bytes (without the 24-byte MessageHeader) of one request and of retriever `index`'s reply.
std::size_t request_payload_bytes(const Geometry& g);
std::size_t reply_payload_bytes(const Geometry& g, int index, int n_retrievers);

struct LoopOptions {
  int64_t warmup = 1000;       // untimed round trips first
  int64_t iterations = 20000;  // timed round trips
  std::chrono::milliseconds wait_timeout{10000};  // deadline of each send/recv
};

// Round-trip times of the timed iterations, in microseconds, in order.
struct RoundTrips {
  std::vector<double> us;
};

// Worker side: runs warmup + iterations round trips over `retrievers` (one channel each, retriever i at
// index i), then sends kShutdown to each and waits for its kShutdown answer. Throws PeerError (naming the
// retriever) on a timeout, a dead peer, a kError message or a reply of the wrong kind, seq or size.
RoundTrips run_worker(const std::vector<transport::Channel*>& retrievers, const Geometry& g, const LoopOptions& o);

// Bulk transfer, as the prefill ships a layer's keys and values: the worker sends `messages` messages of
// `bytes` each to every retriever (interleaved, so all links carry at once), then kBenchBulkDone, and
// waits for every retriever's count of the bytes it received. Returns the seconds from the first send to
// the last count; bytes * messages * retrievers / seconds is the aggregate rate. Throws like run_worker,
// also when a count is short. Run it before run_worker (whose end shuts the retrievers down).
double run_bulk_worker(const std::vector<transport::Channel*>& retrievers, std::size_t bytes, int messages,
                       const LoopOptions& o);

// Retriever side (`index` of `n_retrievers`): answers every kBenchPing with a kBenchPong of its shard's
// size, and counts kBenchBulk bytes until kBenchBulkDone, which it answers with the count, until
// kShutdown, which it answers. Returns the number of requests answered. Throws like run_worker.
int64_t run_retriever(transport::Channel& worker, const Geometry& g, int index, int n_retrievers,
                      const LoopOptions& o);

// Best effort: tells the peer why this side is leaving (kError), ignoring a peer that is already gone.
void send_error(transport::Channel& peer, const std::string& why) noexcept;

struct Summary {
  double p50_us = 0, p99_us = 0, mean_us = 0, min_us = 0, max_us = 0;
};
// Nearest-rank percentiles. RA_ASSERTs that `us` is not empty.
Summary summarize(std::vector<double> us);

}  // namespace ra::bench
