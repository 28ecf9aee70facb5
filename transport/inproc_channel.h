#pragma once
// The in-process Channel: two ends joined by mutex-guarded queues, for unit tests of the worker and
// retriever logic without processes. It honours the whole Channel contract, liveness included: a
// destroyed end is a dead peer, and an end whose owner stops calling heartbeat() and sending goes
// silent after `liveness_timeout`.

#include <memory>
#include <string>
#include <utility>

#include "transport/channel.h"

namespace ra::transport {

// Returns {a, b}: what a sends, b receives, and the reverse. a's peer_name() is `name_b`, and b's is
// `name_a`. Either end may live on any thread; each end is used by one thread at a time, except
// heartbeat(), which any thread may call.
std::pair<std::unique_ptr<Channel>, std::unique_ptr<Channel>> make_inproc_pair(
    std::string name_a, std::string name_b,
    std::chrono::milliseconds liveness_timeout = kDefaultLivenessTimeout);

}  // namespace ra::transport
