#pragma once
// The handshake's shared facts (DESIGN §4): the attention geometry both the worker and every retriever
// must hold, and the HelloPayload (messages.h) describing it. The worker sends it with kHello, each
// retriever answers with its own; make_hello builds both, so the two sides compare like with like.

#include <cstdint>

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

}  // namespace ra::transport
