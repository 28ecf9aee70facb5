#pragma once
// The handshake's shared facts (DESIGN §4): the attention geometry both the worker and every retriever
// must hold, and the HelloPayload (messages.h) describing it. The worker sends it with kHello, each
// retriever answers with its own; make_hello builds both, so the two sides compare like with like.
// The answer (kHelloAck) also carries the retriever's RetrieverReport: its host and placement as it
// found them there (issue 21 item 2).

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "transport/channel.h"
#include "transport/messages.h"

namespace ra::transport {

struct HeadGeometry {
  int64_t n_layers = 0;
  int64_t n_heads = 0;     // query heads
  int64_t n_kv_heads = 0;  // n_heads % n_kv_heads == 0
  int64_t head_dim = 0;
  float scale = 0;         // score scale
  int64_t group_size() const { return n_heads / n_kv_heads; }
};

// The payload for `geometry` and the plan's digest; plan_bytes stays 0 (the worker sets it for kHello).
inline HelloPayload make_hello(const HeadGeometry& g, uint64_t plan_digest) {
  HelloPayload h;
  h.header_bytes = sizeof(MessageHeader);
  h.n_layers = static_cast<uint32_t>(g.n_layers);
  h.n_heads = static_cast<uint32_t>(g.n_heads);
  h.n_kv_heads = static_cast<uint32_t>(g.n_kv_heads);
  h.head_dim = static_cast<uint32_t>(g.head_dim);
  h.scale = g.scale;
  h.plan_digest = plan_digest;
  return h;
}

// Empty when the two agree; else one clause per differing field, "; "-separated:
// "n_layers: worker 4, retriever 6". plan_bytes is not compared (only kHello carries plan text).
std::string describe_hello_mismatch(const HelloPayload& worker, const HelloPayload& retriever);

// What a retriever says of itself at the handshake: where it runs and how it placed itself, as its own
// host's hwloc topology gave it (launcher/plan/numa_topology.h; placed_on_this_host). The worker logs
// it beside the plan's guess for that retriever, which the launcher made from its own machine.
struct RetrieverReport {
  int rank = 0;                     // MPI rank; 0 = not a rank (an in-process service)
  std::string host;                 // its host name, as the host says it
  int64_t pid = 0;
  std::string transport;            // "shm", "ucx", ... ("" in process)
  std::vector<int> cores_per_node;  // physical cores of each NUMA node of its host (nodes with CPUs)
  int numa_node = -1;               // index into cores_per_node it bound itself to; -1 = unbound
  std::string binding;              // what the binding did, one line ("NUMA binding: node 1: cpus 8-15, ...")
  std::vector<int> cpus;            // the cores (first CPU of each) its search threads were given, ascending
  int threads = 0;                  // search threads (the service sets it: its team's size)
  bool pinned = false;              // those threads are pinned to `cpus`, else they float over its node

  int numa_nodes() const { return static_cast<int>(cores_per_node.size()); }
  // Physical cores of its NUMA node, or of its whole host when unbound; 0 when unknown.
  int node_cores() const;
  bool operator==(const RetrieverReport&) const = default;
};

// A kHelloAck's payload: `hello`, RetrieverReportPayload, the report's JSON text. Replaces `out`.
void write_hello_ack(const HelloPayload& hello, const RetrieverReport& report, std::vector<std::byte>& out);

// Reads a kHelloAck answering `sent` (the worker's kHello). `what` names the message and its sender for
// errors ("kHelloAck from retriever rank 1 on host a"). Throws PeerError naming the field at fault when
// the ack is of another protocol (magic, protocol_version, header_bytes: a retriever of another build),
// differs from `sent` (geometry, plan digest), holds a report of another layout (report_bytes), is
// truncated or too long, or its report text is not the JSON object expected.
RetrieverReport read_hello_ack(std::span<const std::byte> payload, std::string_view what, const HelloPayload& sent);

}  // namespace ra::transport
