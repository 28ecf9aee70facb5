#include "bench/transport/round_trip.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "common/error.h"
#include "transport/messages.h"

namespace ra::bench {
namespace {

using transport::Channel;
using transport::MessageHeader;
using transport::MessageKind;
using transport::PeerError;
using transport::to_wire;

constexpr std::chrono::milliseconds kShutdownTimeout{5000};

// kv heads owned by retriever `index`: the first n_kv % R retrievers take one more.
int owned_kv_heads(const Geometry& g, int index, int n_retrievers) {
  return g.n_kv_heads / n_retrievers + (index < g.n_kv_heads % n_retrievers ? 1 : 0);
}

// Throws PeerError when a message is not the expected one; a kError carries the peer's reason.
void expect(const Channel& peer, const MessageHeader& h, const std::vector<std::byte>& payload, MessageKind kind,
            uint64_t seq, std::size_t bytes) {
  if (h.kind == to_wire(MessageKind::kError)) {
    throw PeerError(fmt::format("{} is leaving: {}", peer.peer_name(),
                                std::string(reinterpret_cast<const char*>(payload.data()), payload.size())));
  }
  if (h.kind != to_wire(kind) || h.seq != seq || h.bytes != bytes || payload.size() != bytes) {
    throw PeerError(fmt::format("{} sent kind {} seq {} with {} bytes where kind {} seq {} with {} bytes belongs "
                                "(do both sides run with the same --heads/--kv-heads/--head-dim/--evict?)",
                                peer.peer_name(), h.kind, h.seq, h.bytes, to_wire(kind), seq, bytes));
  }
}

// The request: a StepPayload then q (and k, v) filled with a recognisable pattern. The no-op retriever
// never reads them; they are there so the transport moves real bytes.
std::vector<std::byte> make_request(const Geometry& g) {
  std::vector<std::byte> out(request_payload_bytes(g));
  transport::StepPayload step;
  step.evict_position = g.evict ? 0 : -1;
  std::memcpy(out.data(), &step, sizeof step);
  float* f = reinterpret_cast<float*>(out.data() + sizeof step);
  const std::size_t n = (out.size() - sizeof step) / sizeof(float);
  for (std::size_t i = 0; i < n; ++i) f[i] = static_cast<float>(i % 251) * 0.01f;
  return out;
}

}  // namespace

void check_geometry(const Geometry& g, int n_retrievers) {
  RA_REQUIRE(g.n_heads > 0 && g.n_kv_heads > 0 && g.head_dim > 0,
             "--heads {}, --kv-heads {} and --head-dim {} must all be positive", g.n_heads, g.n_kv_heads, g.head_dim);
  RA_REQUIRE(g.n_heads % g.n_kv_heads == 0, "--heads {} must be a multiple of --kv-heads {}", g.n_heads,
             g.n_kv_heads);
  RA_REQUIRE(n_retrievers >= 1 && n_retrievers <= g.n_kv_heads,
             "{} retrievers for {} kv heads: each retriever needs at least one kv head", n_retrievers, g.n_kv_heads);
}

int owned_query_heads(const Geometry& g, int index, int n_retrievers) {
  return owned_kv_heads(g, index, n_retrievers) * (g.n_heads / g.n_kv_heads);
}

std::size_t request_payload_bytes(const Geometry& g) {
  const std::size_t dim = static_cast<std::size_t>(g.head_dim) * sizeof(float);
  return sizeof(transport::StepPayload) + static_cast<std::size_t>(g.n_heads) * dim +
         (g.evict ? 2 * static_cast<std::size_t>(g.n_kv_heads) * dim : 0);
}

std::size_t reply_payload_bytes(const Geometry& g, int index, int n_retrievers) {
  const auto n = static_cast<std::size_t>(owned_query_heads(g, index, n_retrievers));
  return sizeof(transport::PartialPayload) + n * sizeof(float) + n * static_cast<std::size_t>(g.head_dim) * sizeof(float);
}

RoundTrips run_worker(const std::vector<Channel*>& retrievers, const Geometry& g, const LoopOptions& o) {
  const int r_count = static_cast<int>(retrievers.size());
  check_geometry(g, r_count);
  const std::vector<std::byte> request = make_request(g);
  std::vector<std::size_t> reply_bytes;
  for (int i = 0; i < r_count; ++i) reply_bytes.push_back(reply_payload_bytes(g, i, r_count));
  std::vector<std::vector<std::byte>> replies(retrievers.size());
  for (int i = 0; i < r_count; ++i) replies[static_cast<size_t>(i)].reserve(reply_bytes[static_cast<size_t>(i)]);
  RoundTrips out;
  out.us.reserve(static_cast<size_t>(o.iterations));  // the loop below allocates nothing

  const int64_t total = o.warmup + o.iterations;
  for (int64_t it = 0; it < total; ++it) {
    const auto seq = static_cast<uint64_t>(it + 1);
    const auto t0 = transport::SteadyClock::now();
    const auto deadline = t0 + o.wait_timeout;
    for (Channel* c : retrievers) c->send(to_wire(MessageKind::kBenchPing), seq, request, deadline);
    for (int i = 0; i < r_count; ++i) {
      Channel& c = *retrievers[static_cast<size_t>(i)];
      auto& reply = replies[static_cast<size_t>(i)];
      const MessageHeader h = c.recv(reply, deadline);
      expect(c, h, reply, MessageKind::kBenchPong, seq, reply_bytes[static_cast<size_t>(i)]);
    }
    const auto t1 = transport::SteadyClock::now();
    if (it >= o.warmup) out.us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
  }

  const auto deadline = transport::deadline_after(kShutdownTimeout);
  for (Channel* c : retrievers) c->send(to_wire(MessageKind::kShutdown), 0, {}, deadline);
  std::vector<std::byte> scratch;
  for (Channel* c : retrievers) expect(*c, c->recv(scratch, deadline), scratch, MessageKind::kShutdown, 0, 0);
  return out;
}

double run_bulk_worker(const std::vector<Channel*>& retrievers, std::size_t bytes, int messages, const LoopOptions& o) {
  RA_REQUIRE(bytes > 0 && messages > 0, "bulk transfer of {} messages of {} bytes", messages, bytes);
  std::vector<std::byte> payload(bytes);
  for (std::size_t i = 0; i < bytes; ++i) payload[i] = static_cast<std::byte>(i * 131 + 7);  // touched, not zero pages
  const auto t0 = transport::SteadyClock::now();
  const auto deadline = t0 + o.wait_timeout + std::chrono::seconds(60);
  for (int m = 0; m < messages; ++m) {
    for (Channel* c : retrievers) c->send(to_wire(MessageKind::kBenchBulk), static_cast<uint64_t>(m), payload, deadline);
  }
  for (Channel* c : retrievers) c->send(to_wire(MessageKind::kBenchBulkDone), 0, {}, deadline);
  std::vector<std::byte> reply;
  for (Channel* c : retrievers) {
    const MessageHeader h = c->recv(reply, deadline);
    expect(*c, h, reply, MessageKind::kBenchBulkDone, 0, sizeof(uint64_t));
    uint64_t received = 0;
    std::memcpy(&received, reply.data(), sizeof received);
    if (received != static_cast<uint64_t>(bytes) * static_cast<uint64_t>(messages)) {
      throw transport::PeerError(fmt::format("{} received {} bulk bytes of {} sent", c->peer_name(), received,
                                             static_cast<uint64_t>(bytes) * static_cast<uint64_t>(messages)));
    }
  }
  return std::chrono::duration<double>(transport::SteadyClock::now() - t0).count();
}

int64_t run_retriever(Channel& worker, const Geometry& g, int index, int n_retrievers, const LoopOptions& o) {
  check_geometry(g, n_retrievers);
  const std::size_t want = request_payload_bytes(g);
  const int n = owned_query_heads(g, index, n_retrievers);
  std::vector<std::byte> reply(reply_payload_bytes(g, index, n_retrievers));
  transport::PartialPayload partial;
  partial.n_entries = static_cast<uint32_t>(n);
  std::vector<std::byte> request;
  request.reserve(want);
  // The first wait also covers the worker's start-up, so it gets the longer shutdown-plus-wait bound.
  auto deadline = transport::deadline_after(o.wait_timeout + kShutdownTimeout);
  uint64_t bulk_bytes = 0;
  for (int64_t answered = 0;; ++answered) {
    const MessageHeader h = worker.recv(request, deadline);
    if (h.kind == to_wire(MessageKind::kShutdown)) {
      worker.send(to_wire(MessageKind::kShutdown), 0, {}, transport::deadline_after(kShutdownTimeout));
      return answered;
    }
    if (h.kind == to_wire(MessageKind::kBenchBulk) || h.kind == to_wire(MessageKind::kBenchBulkDone)) {
      --answered;  // not a round trip
      deadline = transport::deadline_after(o.wait_timeout + std::chrono::seconds(60));
      if (h.kind == to_wire(MessageKind::kBenchBulk)) {
        bulk_bytes += h.bytes;
        continue;
      }
      worker.send(to_wire(MessageKind::kBenchBulkDone), 0, std::as_bytes(std::span(&bulk_bytes, 1)), deadline);
      bulk_bytes = 0;
      continue;
    }
    expect(worker, h, request, MessageKind::kBenchPing, h.seq, want);
    // The no-op search: echo the step's position; lse and o stay as they are.
    transport::StepPayload step;
    std::memcpy(&step, request.data(), sizeof step);
    partial.layer = step.layer;
    partial.position = step.position;
    std::memcpy(reply.data(), &partial, sizeof partial);
    const auto now = transport::SteadyClock::now();
    worker.send(to_wire(MessageKind::kBenchPong), h.seq, reply, now + o.wait_timeout);
    deadline = now + o.wait_timeout;
  }
}

void send_error(Channel& peer, const std::string& why) noexcept {
  try {
    peer.send(to_wire(MessageKind::kError), 0, std::as_bytes(std::span(why)),
              transport::deadline_after(std::chrono::milliseconds(500)));
  } catch (...) {
    // The peer is gone or stuck; mpirun's exit code carries the failure.
  }
}

Summary summarize(std::vector<double> us) {
  RA_ASSERT(!us.empty());
  std::sort(us.begin(), us.end());
  auto rank = [&](double p) {
    const auto k = static_cast<std::size_t>(std::ceil(p * static_cast<double>(us.size())));
    return us[std::clamp<std::size_t>(k, 1, us.size()) - 1];
  };
  Summary s;
  s.p50_us = rank(0.50);
  s.p99_us = rank(0.99);
  s.mean_us = std::accumulate(us.begin(), us.end(), 0.0) / static_cast<double>(us.size());
  s.min_us = us.front();
  s.max_us = us.back();
  return s;
}

}  // namespace ra::bench
