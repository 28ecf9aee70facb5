#include "cpu_retriever/retriever_service.h"

#include <omp.h>

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "common/error.h"
#include "common/full_checks.h"
#include "common/partial_state.h"
#include "cpu_retriever/shard_file.h"
#include "transport/wire.h"

namespace ra::retriever {

namespace {
// The most keys a step may ask for per query head (the retriever keeps k ids and weights per thread).
constexpr int32_t kMaxTopK = 1 << 24;
}  // namespace

using transport::Channel;
using transport::HelloPayload;
using transport::MessageKind;
using transport::to_wire;
using transport::WireReader;
using transport::WireWriter;

namespace {

using Seconds = std::chrono::duration<double>;

// What a kBuild writes, for BuildQueue to run one build of at a time: its layer, the payload's first
// field (a payload too short for it gets key 0, and build_layer refuses it by name).
uint64_t build_key(std::span<const std::byte> payload) {
  uint32_t layer = 0;
  if (payload.size() >= sizeof(layer)) std::memcpy(&layer, payload.data(), sizeof(layer));
  return layer;
}

// Replies go out with a generous deadline: the worker is waiting for them, so a full channel means
// the worker is gone or stuck, which liveness reports sooner.
constexpr std::chrono::seconds kReplyTimeout{30};
// While a build runs, the loop polls the channel this often (prefill time only, never per token).
constexpr std::chrono::microseconds kBuildPollPeriod{200};

const char* kind_name(uint32_t kind) {
  switch (static_cast<MessageKind>(kind)) {
    case MessageKind::kHello: return "kHello";
    case MessageKind::kBuild: return "kBuild";
    case MessageKind::kStep: return "kStep";
    case MessageKind::kShutdown: return "kShutdown";
    case MessageKind::kRewind: return "kRewind";
    case MessageKind::kSaveShards: return "kSaveShards";
    case MessageKind::kLoadShards: return "kLoadShards";
    case MessageKind::kError: return "kError";
    default: return "unknown";
  }
}

}  // namespace

RetrieverService::RetrieverService(RetrieverServiceConfig config) : config_(std::move(config)) {
  const ServiceGeometry& g = config_.geometry;
  RA_REQUIRE(g.n_layers > 0 && g.n_heads > 0 && g.n_kv_heads > 0 && g.head_dim > 0 && g.n_heads % g.n_kv_heads == 0,
             "{}: bad geometry ({} layers, {} heads, {} kv heads, head_dim {})", config_.name, g.n_layers, g.n_heads,
             g.n_kv_heads, g.head_dim);
  RA_REQUIRE(static_cast<int64_t>(config_.owned_kv_heads.size()) == g.n_layers,
             "{}: the shard plan lists {} layers, the model has {}", config_.name, config_.owned_kv_heads.size(),
             g.n_layers);
  RA_REQUIRE(config_.search_group >= 0 && (config_.search_group == 0 || g.group_size() % config_.search_group == 0),
             "{}: index.graph_heads_per_search = {} does not divide the GQA group of {} query heads", config_.name,
             config_.search_group, g.group_size());
  RA_REQUIRE(config_.search_interleave >= 0 && config_.search_interleave <= kThreadScratchSlots &&
                 (config_.search_interleave == 0 || g.group_size() % config_.search_interleave == 0),
             "{}: index.graph_interleave = {} must be 0 or a divisor of the GQA group of {} query heads, at most {}",
             config_.name, config_.search_interleave, g.group_size(), kThreadScratchSlots);
  shards_.resize(static_cast<size_t>(g.n_layers));
  offload_start_.assign(static_cast<size_t>(g.n_layers), -1);
  recent_q_.resize(static_cast<size_t>(g.n_layers));
  recent_answers_.resize(static_cast<size_t>(g.n_layers));
  for (const auto& owned : config_.owned_kv_heads) {
    session_.emplace_back(static_cast<int64_t>(owned.size()), g.head_dim, config_.dtype);
  }
  const int threads = config_.threads > 0 ? config_.threads : omp_get_max_threads();
  thread_scratch_.resize(static_cast<size_t>(std::max(1, threads)));
  session_scratch_.resize(thread_scratch_.size());
  // Layers build at once on their shares of the team; each worker sizes its own OpenMP team (FAISS
  // builds take the thread's default).
  const int workers = std::clamp(config_.build_layers, 1, std::max(1, threads));
  build_threads_ = std::max(1, threads / workers);
  builds_ = std::make_unique<BuildQueue>([this](std::span<const std::byte> p) { return build_layer(p); }, workers,
                                         [t = build_threads_] { omp_set_num_threads(t); });
}

void RetrieverService::keep_answers(uint32_t layer_index, int64_t position) {
  AnswerRing& ring = recent_answers_[layer_index];
  const auto& layer = shards_[layer_index];
  const int64_t group = config_.geometry.group_size();
  const int64_t width = answer_width();
  int32_t* row = ring.put(position);
  for (size_t i = 0; i < layer.size(); ++i) {
    for (int64_t m = 0; m < group; ++m) {
      const std::span<const int64_t> ids = layer[i]->last_answer(static_cast<int>(m));
      int32_t* out = row + (static_cast<int64_t>(i) * group + m) * width;
      const int64_t n = std::min<int64_t>(width, static_cast<int64_t>(ids.size()));
      for (int64_t j = 0; j < n; ++j) out[j] = static_cast<int32_t>(ids[static_cast<size_t>(j)]);
      std::fill(out + n, out + width, int32_t{-1});
    }
  }
}

void RetrieverService::check_positions(const transport::StepPayload& step, int64_t shard_rows) const {
  // The GPU keeps the sinks and the last `window` positions; this retriever holds every position
  // between them, contiguous: [first, held_end). At step p the token at p - window leaves the window
  // (if it is past the sinks) and must be exactly the next one held; if none is sent, p - window must
  // already be held or be a sink. So the two sets stay disjoint and cover [0, p] at every step.
  const int64_t start = offload_start_[step.layer];
  if (start < 0) return;  // no keys built and the sinks unknown: nothing to check against
  const int64_t held_end = start + shard_rows + session_[step.layer].rows();
  const int64_t leaving = step.position - config_.window;  // the position leaving the window (window > 0)
  if (step.evict_position >= 0) {
    RA_REQUIRE(step.evict_position == held_end,
               "{}: the step at position {} of layer {} evicts position {}, but the offloaded positions held "
               "end at {} (a gap or a repeat between the GPU's window and this retriever)",
               config_.name, step.position, step.layer, step.evict_position, held_end);
    RA_REQUIRE(config_.window <= 0 || step.evict_position == leaving,
               "{}: the step at position {} of layer {} evicts position {}; with a window of {} it must evict {}",
               config_.name, step.position, step.layer, step.evict_position, config_.window, leaving);
  } else if (config_.window > 0 && config_.sinks >= 0) {  // nothing sent: what leaves is a sink or held
    RA_REQUIRE(leaving < config_.sinks || leaving < held_end,
               "{}: the step at position {} of layer {} evicts nothing, but position {} leaves the window of {} "
               "(sinks {}) and the offloaded positions held end at {}",
               config_.name, step.position, step.layer, leaving, config_.window, config_.sinks, held_end);
  }
}

void RetrieverService::full_check(const transport::StepPayload& step) {
  const auto& layer = shards_[step.layer];
  const int64_t start = offload_start_[step.layer];
  if (layer.empty() || start < 0) return;
  const int64_t rows = layer.front()->size();
  for (size_t i = 0; i < layer.size(); ++i) {
    const int64_t kv_head = config_.owned_kv_heads[step.layer][i];
    RA_REQUIRE(layer[i]->size() == rows,
               "{}: full check at position {} of layer {}: kv head {} holds {} rows, kv head {} holds {}",
               config_.name, step.position, step.layer, kv_head, layer[i]->size(),
               config_.owned_kv_heads[step.layer][0], rows);
    const std::string error = layer[i]->coverage_error();
    RA_REQUIRE(error.empty(), "{}: full check at position {} of layer {}, kv head {}: {}", config_.name,
               step.position, step.layer, kv_head, error);
  }
  // The session tail continues the shards' positions: [start + rows, + its rows), one by one.
  const std::span<const int64_t> session = session_[step.layer].positions();
  for (size_t j = 0; j < session.size(); ++j) {
    RA_REQUIRE(session[j] == start + rows + static_cast<int64_t>(j),
               "{}: full check at position {} of layer {}: session token {} is at position {}, not {}", config_.name,
               step.position, step.layer, j, session[j], start + rows + static_cast<int64_t>(j));
  }
  if (config_.window <= 0 || config_.sinks < 0) return;
  const HeldRange held{start, rows + static_cast<int64_t>(session.size())};
  const std::string error =
      partition_error(step.position, config_.sinks, config_.window, std::span(&held, 1), full_check_marks_);
  RA_REQUIRE(error.empty(), "{}: full check at position {} of layer {}: {}", config_.name, step.position, step.layer,
             error);
}

int64_t RetrieverService::interleave_width(int64_t entries, int threads) const {
  if (config_.search_interleave > 0) return config_.search_interleave;
  // The widest divisor of the group (<= the scratch slots) that still gives every thread a work item.
  const int64_t group = config_.geometry.group_size();
  int64_t best = 1;
  for (int64_t d = 2; d <= std::min<int64_t>(group, kThreadScratchSlots); ++d) {
    if (group % d == 0 && entries / d >= threads) best = d;
  }
  return best;
}

RetrieverService::~RetrieverService() = default;  // builds_ first: its thread uses the shards

void RetrieverService::serve(Channel& channel) {
  build_source_ = "kBuild from " + channel.peer_name();
  std::vector<FinishedBuild> finished;
  for (;;) {
    // Builds run on builds_' thread; this loop alone talks to the channel.
    finished.clear();
    bool builds_idle = false;
    try {
      builds_idle = builds_->take_done(finished);
    } catch (const transport::PeerError&) {
      throw;
    } catch (const std::exception& e) {
      tell_worker_and_rethrow(channel, 0, e);
    }
    for (const FinishedBuild& f : finished) {
      channel.send(to_wire(MessageKind::kBuildDone), f.seq, std::as_bytes(std::span(&f.done, 1)),
                   transport::deadline_after(kReplyTimeout));
    }
    transport::MessageHeader h;
    if (builds_idle) {
      // Every build's kBuildDone is sent: nothing can finish while this blocks. (Reading idle() after
      // take_done() stranded a build that ended between the two until the next message: the worker,
      // waiting for that kBuildDone, hung.)
      h = channel.recv(in_, transport::kNoDeadline);
    } else if (!channel.try_recv(h, in_)) {
      builds_->wait_for_progress(kBuildPollPeriod);
      continue;
    }
    try {
      if (!greeted_ && h.kind != to_wire(MessageKind::kHello)) {
        raise("{}: expected kHello first, got {} from {}", config_.name, kind_name(h.kind), channel.peer_name());
      }
      switch (static_cast<MessageKind>(h.kind)) {
        case MessageKind::kHello: on_hello(channel, h.seq, in_); break;
        case MessageKind::kBuild:
          builds_->submit(h.seq, build_key(in_), std::move(in_));
          in_ = {};
          break;
        case MessageKind::kStep:
          drain_builds(channel);
          on_step(channel, h.seq, in_);
          break;
        case MessageKind::kRewind:
          drain_builds(channel);  // a build clears its layer's session tail
          on_rewind(channel, h.seq, in_);
          break;
        case MessageKind::kSaveShards:
          drain_builds(channel);
          on_save_shards(channel, h.seq, in_);
          break;
        case MessageKind::kLoadShards:
          drain_builds(channel);
          on_load_shards(channel, h.seq, in_);
          break;
        case MessageKind::kShutdown:
          drain_builds(channel);
          if (config_.usage_sample_steps > 0 && stats_.steps > 0) stats_.decode_usage.add(read_process_usage());
          stats_.merged_keys = stats_.tail_keys = 0;
          for (const auto& layer : shards_) {
            for (const auto& shard : layer) {
              const HeadShard::TailCounts c = shard->tail_counts();
              stats_.merged_keys += c.merged;
              stats_.tail_keys += c.tail;
            }
          }
          channel.send(to_wire(MessageKind::kShutdown), h.seq, {}, transport::deadline_after(kReplyTimeout));
          return;
        case MessageKind::kError:
          throw transport::PeerError(fmt::format("{} reported an error: {}", channel.peer_name(),
                                                 std::string_view(reinterpret_cast<const char*>(in_.data()), in_.size())));
        default:
          raise("{}: unexpected message kind {} from {}", config_.name, h.kind, channel.peer_name());
      }
    } catch (const transport::PeerError&) {
      throw;
    } catch (const std::exception& e) {
      tell_worker_and_rethrow(channel, h.seq, e);
    }
  }
}

void RetrieverService::on_hello(Channel& channel, uint64_t seq, std::span<const std::byte> payload) {
  const std::string what = "kHello from " + channel.peer_name();
  WireReader r(payload, what);
  const auto worker = r.get<HelloPayload>();
  r.text(static_cast<size_t>(std::min<uint64_t>(worker.plan_bytes, r.remaining())));
  const HelloPayload mine = transport::make_hello(config_.geometry, config_.plan_digest);
  const std::string diff = describe_hello_mismatch(worker, mine);
  if (!diff.empty()) raise("{}: handshake with {} failed: {}", config_.name, channel.peer_name(), diff);
  greeted_ = true;
  transport::RetrieverReport report = config_.report;
  report.threads = static_cast<int>(thread_scratch_.size());  // the team every kStep's search runs
  transport::write_hello_ack(mine, report, out_);
  channel.send(to_wire(MessageKind::kHelloAck), seq, out_, transport::deadline_after(kReplyTimeout));
}

// Tells the worker why this retriever is leaving (kError, best effort), then leaves.
[[noreturn]] void RetrieverService::tell_worker_and_rethrow(Channel& channel, uint64_t seq, const std::exception& e) {
  const std::string what = e.what();
  try {
    channel.send(to_wire(MessageKind::kError), seq, std::as_bytes(std::span<const char>(what.data(), what.size())),
                 transport::deadline_after(std::chrono::seconds(2)));
  } catch (...) {
  }
  throw;
}

void RetrieverService::drain_builds(Channel& channel) {
  std::vector<FinishedBuild> finished;
  for (;;) {
    finished.clear();
    const bool idle = builds_->take_done(finished);
    for (const FinishedBuild& f : finished) {
      channel.send(to_wire(MessageKind::kBuildDone), f.seq, std::as_bytes(std::span(&f.done, 1)),
                   transport::deadline_after(kReplyTimeout));
    }
    if (idle) return;
    builds_->wait_for_progress(kBuildPollPeriod);
  }
}

transport::BuildDonePayload RetrieverService::build_layer(std::span<const std::byte> payload) {
  const auto t0 = transport::SteadyClock::now();
  const ServiceGeometry& g = config_.geometry;
  WireReader r(payload, build_source_);
  const auto b = r.get<transport::BuildPayload>();
  RA_REQUIRE(b.layer < g.n_layers, "{}: kBuild for layer {} of a {}-layer model", config_.name, b.layer, g.n_layers);
  // Every count is bounded by the payload's bytes (so no product below overflows) and positions are
  // non-negative; found by tests/fuzz/retriever_messages_fuzz: a negative first_position indexed the
  // query ring out of bounds.
  // A retriever that owns no kv head of the layer (more retrievers than kv heads) gets the counts with
  // no rows after them; its counts are bounded by the positions a model can have instead.
  const auto& owned = config_.owned_kv_heads[b.layer];
  const auto bytes = owned.empty() ? int64_t{1} << 40 : static_cast<int64_t>(payload.size());
  RA_REQUIRE(b.n_keys >= 0 && b.n_keys <= bytes && b.n_window >= 0 && b.n_window <= bytes && b.n_train <= bytes &&
                 b.list_width <= bytes && (b.list_width == 0 || b.n_train <= bytes / b.list_width) &&
                 b.key_query_width <= transport::kMaxKeyQueryWidth &&
                 b.first_position >= 0 && b.first_position <= (int64_t{1} << 40),
             "{}: kBuild for layer {} with n_keys {}, n_window {}, n_train {}, list_width {}, key_query_width {}, "
             "first_position {}: counts beyond its {} bytes (or over {} key queries) or a negative position",
             config_.name, b.layer, b.n_keys, b.n_window, b.n_train, b.list_width, b.key_query_width, b.first_position,
             bytes, transport::kMaxKeyQueryWidth);
  const auto hd = static_cast<size_t>(g.head_dim);
  // Each side's rows in the form they travelled in, taken by the stores as they are (kv_rows.h): no
  // float32 copy of the layer. A form the store cannot take is refused here, before anything is built.
  RA_REQUIRE(is_wire_rows(b.key_rows) && is_wire_rows(b.value_rows),
             "{}: kBuild for layer {} with key_rows {} and value_rows {}: 0 (f32), 1 (bf16) or 2 (int8) expected",
             config_.name, b.layer, b.key_rows, b.value_rows);
  const auto key_rows = static_cast<WireRows>(b.key_rows), value_rows = static_cast<WireRows>(b.value_rows);
  const auto refuse = [&](const char* side, WireRows rows, KvDtype store) {
    raise("{}: kBuild for layer {} carries {} {}, but this retriever stores {} {} ({} rows go into {})",
          config_.name, b.layer, wire_rows_name(rows), side, kv_dtype_name(store), side, wire_rows_name(rows),
          rows == WireRows::kQ8 ? "int8 stores only" : "bf16 or int8 stores only");
  };
  if (!takes_wire_rows(config_.dtype.key, key_rows)) refuse("keys", key_rows, config_.dtype.key);
  if (!takes_wire_rows(config_.dtype.value, value_rows)) refuse("values", value_rows, config_.dtype.value);
  std::vector<KvRows> keys, values;
  for (size_t i = 0; i < owned.size(); ++i) {
    keys.emplace_back(kv_dtype_of(key_rows), r.bytes(transport::wire_block_bytes(key_rows, b.n_keys, g.head_dim)));
    values.emplace_back(kv_dtype_of(value_rows),
                        r.bytes(transport::wire_block_bytes(value_rows, b.n_keys, g.head_dim)));
  }
  const auto group = static_cast<size_t>(g.group_size());
  const float* train = r.floats(owned.size() * group * b.n_train * hd);
  RA_REQUIRE(b.n_window >= 0, "{}: kBuild with {} window queries", config_.name, b.n_window);
  const auto n_window = static_cast<size_t>(b.n_window);
  const float* window_q = r.floats(owned.size() * group * n_window * hd);  // [owned q head][n_window][hd]
  const auto width = static_cast<size_t>(b.list_width);  // [owned q head][n_train][width], found on the GPU
  const int32_t* lists = width > 0 ? r.int32s(owned.size() * group * b.n_train * width) : nullptr;
  const auto kq_width = static_cast<size_t>(b.key_query_width);  // [owned kv head][n_keys][width], from the GPU
  const int32_t* key_queries = kq_width > 0 ? r.int32s(owned.size() * static_cast<size_t>(b.n_keys) * kq_width) : nullptr;
  r.expect_end();

  // The window tokens' queries, kept until their keys arrive as evictions (graph only).
  const int64_t owned_q = static_cast<int64_t>(owned.size() * group);
  auto& ring = recent_q_[b.layer];
  reset_rings(b.layer);
  if (!ring.empty()) {
    for (size_t i = 0; i < n_window; ++i) {
      float* row = ring.put(b.first_position + b.n_keys + static_cast<int64_t>(i));
      for (int64_t h = 0; h < owned_q; ++h) {
        std::copy_n(window_q + (static_cast<size_t>(h) * n_window + i) * hd, hd, row + h * g.head_dim);
      }
    }
  }

  {
    const std::lock_guard lock(shards_mu_);
    shards_[b.layer].clear();  // the old context's shards go first: their memory is needed now
  }
  std::vector<std::unique_ptr<HeadShard>> layer;
  offload_start_[b.layer] = b.n_keys > 0       ? b.first_position
                            : config_.sinks >= 0 ? std::max(b.first_position, config_.sinks)
                                                 : -1;
  session_[b.layer].clear();  // a new prebuilt context: no session on top of it yet
  for (size_t i = 0; i < owned.size(); ++i) {
    ShardIndexParams params = config_.index;
    params.graph.threads = build_threads_;
    params.stagger_key = static_cast<int64_t>(b.layer) * g.n_kv_heads + owned[i];  // merges spread over tokens
    layer.push_back(std::make_unique<HeadShard>(g.head_dim, config_.dtype, keys[i], values[i], b.n_keys,
                                                static_cast<int>(group), train + i * group * b.n_train * hd,
                                                b.n_train, params, lists ? lists + i * group * b.n_train * width : nullptr,
                                                static_cast<int>(width),
                                                KeyQueries{key_queries ? key_queries + i * b.n_keys * kq_width : nullptr,
                                                           static_cast<int>(kq_width)}));
  }
  const double seconds = Seconds(transport::SteadyClock::now() - t0).count();
  const std::lock_guard lock(shards_mu_);  // other layers may be building
  shards_[b.layer] = std::move(layer);
  stats_.build_seconds += seconds;
  stats_.layers_with_lists += lists != nullptr ? 1 : 0;
  stats_.memory_bytes = 0;
  for (const auto& l : shards_) {
    for (const auto& s : l) stats_.memory_bytes += s->memory_bytes();
  }
  return transport::BuildDonePayload{b.layer, 0, seconds};
}

void RetrieverService::on_step(Channel& channel, uint64_t seq, std::span<const std::byte> payload) {
  const auto t0 = transport::SteadyClock::now();
  const ServiceGeometry& g = config_.geometry;
  const auto hd = static_cast<size_t>(g.head_dim);
  if (step_name_.empty()) step_name_ = "kStep from " + channel.peer_name();
  WireReader r(payload, step_name_);
  const auto step = r.get<transport::StepPayload>();
  RA_REQUIRE(step.layer < g.n_layers, "{}: kStep for layer {} of a {}-layer model", config_.name, step.layer,
             g.n_layers);
  // Found by tests/fuzz/retriever_messages_fuzz: a negative position indexed the query ring out of bounds.
  RA_REQUIRE(step.position >= 0 && step.evict_position >= -1 && step.evict_position < step.position,
             "{}: kStep at position {} evicting position {}", config_.name, step.position, step.evict_position);
  RA_REQUIRE(step.k >= 0 && step.k <= kMaxTopK && step.ef >= 0 && step.nprobe >= 0 &&
                 (step.flags & ~transport::kStepAuditRecall) == 0 &&
                 step.scan_budget < std::max<size_t>(1, config_.index.scan_fractions.size()),
             "{}: kStep asks for top-k {} (0 to {}), ef {}, nprobe {}, flags {:#x}, scan budget {} ({} configured)",
             config_.name, step.k, kMaxTopK, step.ef, step.nprobe, step.flags, step.scan_budget,
             config_.index.scan_fractions.size());
  const float* q = r.floats(static_cast<size_t>(g.n_heads) * hd);
  const auto& owned = config_.owned_kv_heads[step.layer];
  auto& layer = shards_[step.layer];
  RA_REQUIRE(layer.size() == owned.size(), "{}: kStep for layer {} before its kBuild", config_.name, step.layer);
  check_positions(step, layer.empty() ? 0 : layer.front()->size());
  if (step.evict_position >= 0) {
    const float* k = r.floats(static_cast<size_t>(g.n_kv_heads) * hd);
    const float* v = r.floats(static_cast<size_t>(g.n_kv_heads) * hd);
    const float* own_q = recent_q_[step.layer].find(step.evict_position);  // [owned q heads][hd] or null
    const int32_t* own_a = recent_answers_[step.layer].find(step.evict_position);  // [owned q heads][width] or null
    const int width = answer_width();
    const int64_t group_floats = g.group_size() * g.head_dim;
    if (session_mode_) {
      session_[step.layer].append(step.evict_position, k, v, owned);  // the shards keep the context's KV
    } else {
      for (size_t i = 0; i < owned.size(); ++i) {
        layer[i]->append(k + owned[i] * hd, v + owned[i] * hd,
                         own_q ? own_q + static_cast<int64_t>(i) * group_floats : nullptr,
                         own_q && own_a ? own_a + static_cast<int64_t>(i) * g.group_size() * width : nullptr, width);
      }
    }
    stats_.evicted += 1;
    stats_.evicted_with_query += own_q && !session_mode_ ? 1 : 0;
    stats_.evicted_with_answers += own_q && own_a && !session_mode_ ? 1 : 0;
  }
  if (!recent_q_[step.layer].empty()) {  // this token's queries, for its own eviction W steps from now
    float* row = recent_q_[step.layer].put(step.position);
    for (size_t i = 0; i < owned.size(); ++i) {
      for (int64_t m = 0; m < g.group_size(); ++m) {
        const int64_t head = owned[i] * g.group_size() + m;
        std::copy_n(q + head * hd, hd, row + (static_cast<int64_t>(i) * g.group_size() + m) * g.head_dim);
      }
    }
  }
  r.expect_end();
  if (config_.full_checks) full_check(step);
  const auto t_appended = transport::SteadyClock::now();

  // One answer per owned query head: kv head owned[i], group member m -> query head owned[i]*group + m.
  // One work item per `per_item` members of a shard (one each unless the graph is per kv head): a
  // group's heads share one traversal (search_group > 1), or one thread steps their separate searches
  // in turn (search_group 1: interleaved).
  const int64_t group = g.group_size();
  const int64_t entries = static_cast<int64_t>(owned.size()) * group;
  const int threads = static_cast<int>(thread_scratch_.size());
  const bool per_kv_head = !layer.empty() && layer.front()->shares_traversals();
  const bool interleaved = per_kv_head && config_.search_group == 1;
  const int64_t per_item = !per_kv_head ? 1
                           : interleaved ? interleave_width(entries, threads)
                                         : (config_.search_group > 0 ? config_.search_group : group);
  const int64_t items = entries / per_item;
  lse_.resize(static_cast<size_t>(entries));
  o_.resize(static_cast<size_t>(entries) * hd);
  entry_stats_.assign(static_cast<size_t>(items), {});
  SearchParams params{step.k, step.ef, step.nprobe};
  params.expand = config_.search_expand;
  params.audit_recall = (step.flags & transport::kStepAuditRecall) != 0;
  params.scan_budget = static_cast<int>(step.scan_budget);
  const SessionTail& session = session_[step.layer];  // empty outside session mode
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1) if (items > 1)
  for (int64_t item = 0; item < items; ++item) {
    const int64_t e = item * per_item;  // its first answer
    const size_t shard = static_cast<size_t>(e / group);
    const int member = static_cast<int>(e % group);
    const int64_t head = owned[shard] * group + member;
    const auto thread = static_cast<size_t>(omp_get_thread_num());
    if (interleaved) {
      layer[shard]->search_attend_interleaved(member, static_cast<int>(per_item), q + head * hd, params, g.scale,
                                              thread_scratch_[thread], o_.data() + e * hd, lse_.data() + e,
                                              &entry_stats_[item]);
    } else {
      layer[shard]->search_attend_group(member, static_cast<int>(per_item), q + head * hd, params, g.scale,
                                        thread_scratch_[thread], o_.data() + e * hd, lse_.data() + e,
                                        &entry_stats_[item]);
    }
    for (int64_t m = 0; m < per_item; ++m) {  // a serving session's own tokens, exactly (empty otherwise)
      lse_[e + m] = session.merge_into(shard, q + (head + m) * hd, g.scale, lse_[e + m], o_.data() + (e + m) * hd,
                                       session_scratch_[thread], &entry_stats_[item]);
    }
  }
  if (!recent_answers_[step.layer].empty() && !session_mode_) keep_answers(step.layer, step.position);
  const auto t_searched = transport::SteadyClock::now();
  transport::PartialPayload reply;
  reply.layer = step.layer;
  reply.n_entries = static_cast<uint32_t>(entries);
  reply.position = step.position;
  reply.keys_offloaded = (layer.empty() ? 0 : layer.front()->size()) + session.rows();
  for (const SearchStats& s : entry_stats_) {
    reply.distance_computations += s.distance_computations;
    reply.recall_hits += s.recall_hits;
    reply.recall_wanted += s.recall_wanted;
  }
  const auto t_reply = transport::SteadyClock::now();
  reply.search_seconds = Seconds(t_reply - t0).count();
  reply.received_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(t0.time_since_epoch()).count();
  reply.replied_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(t_reply.time_since_epoch()).count();
  WireWriter w(out_);
  w.put(reply);
  w.put_floats(lse_.data(), lse_.size());
  w.put_floats(o_.data(), o_.size());
  channel.send(to_wire(MessageKind::kPartial), seq, out_, transport::deadline_after(kReplyTimeout));
  if (stats_.steps == 0) stats_.first_step_seconds = reply.search_seconds;
  if (reply.search_seconds > stats_.slowest_step_seconds) {
    stats_.slowest_step_seconds = reply.search_seconds;
    stats_.slowest_step = stats_.steps;
    stats_.slowest_step_layer = step.layer;
    stats_.slowest_step_append_seconds = Seconds(t_appended - t0).count();
    stats_.slowest_step_search_seconds = Seconds(t_searched - t_appended).count();
  }
  ++stats_.steps;
  if (config_.usage_sample_steps > 0 && (stats_.steps - 1) % config_.usage_sample_steps == 0) {
    stats_.decode_usage.add(read_process_usage());  // after the reply: off this step's critical path
  }
  stats_.append_seconds += Seconds(t_appended - t0).count();
  stats_.searching_seconds += Seconds(t_searched - t_appended).count();
  for (const SearchStats& s : entry_stats_) stats_.hops += s.hops;
  stats_.query_heads_searched += entries;
  stats_.distance_computations += reply.distance_computations;
  stats_.search_seconds += reply.search_seconds;
}

void RetrieverService::reset_rings(uint32_t layer) {
  const ServiceGeometry& g = config_.geometry;
  const int64_t owned_q = static_cast<int64_t>(config_.owned_kv_heads[layer].size()) * g.group_size();
  recent_q_[layer] = QueryRing();
  recent_answers_[layer] = AnswerRing();
  if (config_.index.kind == IndexKind::kGraph && config_.window > 0) {
    recent_q_[layer] = QueryRing(config_.window + 1, owned_q * g.head_dim);
    // The decode steps' answers (the window tokens' prefill queries have none: those merge by a search).
    if (config_.index.graph.merge_threshold > 0) {
      recent_answers_[layer] = AnswerRing(config_.window + 1, owned_q * answer_width());
    }
  }
}

std::string RetrieverService::shard_file_path(std::span<const std::byte> payload, const std::string& what,
                                              transport::ShardFilePayload* request) const {
  WireReader r(payload, what);
  *request = r.get<transport::ShardFilePayload>();
  RA_REQUIRE(request->path_bytes > 0 && request->path_bytes <= 4096 && request->path_bytes == r.remaining(),
             "{}: {}: a path of {} bytes with {} bytes left", config_.name, what, request->path_bytes, r.remaining());
  std::string path(r.text(static_cast<size_t>(request->path_bytes)));
  // The worker names DIR/retriever-NNN.shards (gpu_worker/serve/context_files.h): anything else is refused,
  // so that no message makes a retriever write or read another kind of file.
  RA_REQUIRE(path.front() == '/' && path.ends_with(".shards") && path.find('\0') == std::string::npos,
             "{}: {}: '{}' is not an absolute path to a .shards file", config_.name, what, path);
  return path;
}

void RetrieverService::on_save_shards(Channel& channel, uint64_t seq, std::span<const std::byte> payload) {
  const std::string what = "kSaveShards from " + channel.peer_name();
  transport::ShardFilePayload request;
  const std::string path = shard_file_path(payload, what, &request);
  const ShardFileInfo info = write_shard_file(path, config_.owned_kv_heads, offload_start_, shards_);
  const transport::ShardFilePayload done{info.bytes, info.fnv1a64, 0};
  channel.send(to_wire(MessageKind::kSaveShardsDone), seq, std::as_bytes(std::span(&done, 1)),
               transport::deadline_after(kReplyTimeout));
}

void RetrieverService::on_load_shards(Channel& channel, uint64_t seq, std::span<const std::byte> payload) {
  const std::string what = "kLoadShards from " + channel.peer_name();
  transport::ShardFilePayload request;
  const std::string path = shard_file_path(payload, what, &request);
  const auto t0 = transport::SteadyClock::now();
  ShardFileExpect expect;
  expect.file = {request.bytes, request.fnv1a64};
  expect.owned_kv_heads = config_.owned_kv_heads;
  expect.head_dim = config_.geometry.head_dim;
  expect.n_kv_heads = config_.geometry.n_kv_heads;
  expect.group_size = static_cast<int>(config_.geometry.group_size());
  expect.dtype = config_.dtype;
  expect.params = config_.index;
  ShardLayers loaded = read_shard_file(path, expect);  // all or nothing: nothing is replaced if it throws
  for (size_t l = 0; l < shards_.size(); ++l) {
    shards_[l] = std::move(loaded.shards[l]);
    offload_start_[l] = loaded.offload_start[l];
    session_[l].clear();  // as after a kBuild: no session on top of the context yet
    reset_rings(static_cast<uint32_t>(l));
  }
  stats_.build_seconds += Seconds(transport::SteadyClock::now() - t0).count();
  stats_.layers_loaded += static_cast<int64_t>(shards_.size());
  stats_.memory_bytes = 0;
  for (const auto& l : shards_) {
    for (const auto& shard : l) stats_.memory_bytes += shard->memory_bytes();
  }
  const transport::ShardFilePayload done{request.bytes, request.fnv1a64, 0};
  channel.send(to_wire(MessageKind::kLoadShardsDone), seq, std::as_bytes(std::span(&done, 1)),
               transport::deadline_after(kReplyTimeout));
}

void RetrieverService::on_rewind(Channel& channel, uint64_t seq, std::span<const std::byte> payload) {
  const std::string what = "kRewind from " + channel.peer_name();
  WireReader r(payload, what);
  const auto rewind = r.get<transport::RewindPayload>();
  r.expect_end();
  session_mode_ = true;
  for (SessionTail& tail : session_) tail.rewind(rewind.position);
  channel.send(to_wire(MessageKind::kRewindDone), seq, std::as_bytes(std::span(&rewind, 1)),
               transport::deadline_after(kReplyTimeout));
}

}  // namespace ra::retriever
