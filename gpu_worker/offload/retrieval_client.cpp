#include "gpu_worker/offload/retrieval_client.h"

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "common/error.h"
#include "common/partial_state.h"
#include "transport/wire.h"

namespace ra {

using transport::Channel;
using transport::MessageKind;
using transport::PeerError;
using transport::SteadyClock;
using transport::to_wire;
using transport::WireReader;
using transport::WireWriter;

namespace {
using Seconds = std::chrono::duration<double>;
}

RetrievalClient::RetrievalClient(std::vector<Channel*> channels, RetrievalClientOptions options)
    : channels_(std::move(channels)), options_(std::move(options)) {
  const RetrievalGeometry& g = options_.geometry;
  RA_REQUIRE(options_.owned_kv_heads.size() == channels_.size(), "retrieval client: {} channels for {} shard lists",
             channels_.size(), options_.owned_kv_heads.size());
  const int64_t group = g.n_heads / g.n_kv_heads;
  owned_q_heads_.resize(channels_.size());
  for (size_t r = 0; r < channels_.size(); ++r) {
    RA_REQUIRE(static_cast<int64_t>(options_.owned_kv_heads[r].size()) == g.n_layers,
               "retrieval client: retriever {}'s shard list has {} layers, the model {}", r,
               options_.owned_kv_heads[r].size(), g.n_layers);
    for (const auto& kv_heads : options_.owned_kv_heads[r]) {
      std::vector<int64_t> heads;
      for (int64_t kv : kv_heads) {
        for (int64_t m = 0; m < group; ++m) heads.push_back(kv * group + m);
      }
      owned_q_heads_[r].push_back(std::move(heads));
    }
  }
  active_.reserve(channels_.size());
  for (Channel* ch : channels_) partial_names_.push_back("kPartial from " + ch->peer_name());
  reset_stats();
}

void RetrievalClient::reset_stats() {
  stats_ = {};
  stats_.layers.assign(static_cast<size_t>(options_.geometry.n_layers), {});
}

void RetrievalClient::set_knobs(int top_k, int ef, int nprobe, int scan_budget) {
  RA_REQUIRE(top_k >= 0 && ef >= 0 && nprobe >= 0 && scan_budget >= 0,
             "retrieval client: top-k {}, ef {}, nprobe {}, scan budget {}", top_k, ef, nprobe, scan_budget);
  options_.top_k = top_k;
  options_.ef = ef;
  options_.nprobe = nprobe;
  options_.scan_budget = scan_budget;
}

void RetrievalClient::rewind(int64_t position, std::chrono::milliseconds timeout) {
  const transport::RewindPayload rewind{position};
  const auto payload = std::as_bytes(std::span(&rewind, 1));
  const uint64_t seq = ++seq_;
  const auto deadline = transport::deadline_after(timeout);
  for (Channel* ch : channels_) ch->send(to_wire(MessageKind::kRewind), seq, payload, deadline);
  for (size_t r = 0; r < channels_.size(); ++r) {
    const transport::MessageHeader h = expect(r, MessageKind::kRewindDone, deadline);
    transport::RewindPayload echo{-1};
    if (in_.size() == sizeof(echo)) std::memcpy(&echo, in_.data(), sizeof(echo));
    if (h.seq != seq || echo.position != position) {
      throw PeerError(fmt::format("{} answered kRewind (seq {}, position {}) with (seq {}, {} bytes, position {})",
                                  channels_[r]->peer_name(), seq, position, h.seq, in_.size(), echo.position));
    }
  }
}

namespace {

// A kSaveShards / kLoadShards request: the file's size and checksum (loads), then its path.
void put_shard_request(std::vector<std::byte>& out, transport::ShardFilePayload file, const std::string& path) {
  file.path_bytes = path.size();
  WireWriter w(out);
  w.put(file);
  w.put_text(path);
}

}  // namespace

std::vector<transport::ShardFilePayload> RetrievalClient::save_shards(const std::vector<std::string>& paths,
                                                                      std::chrono::milliseconds timeout) {
  RA_REQUIRE(paths.size() == channels_.size(), "save_shards: {} paths for {} retrievers", paths.size(),
             channels_.size());
  const uint64_t seq = ++seq_;
  const auto deadline = transport::deadline_after(timeout);
  for (size_t r = 0; r < channels_.size(); ++r) {
    put_shard_request(out_, {}, paths[r]);
    channels_[r]->send(to_wire(MessageKind::kSaveShards), seq, out_, deadline);
  }
  std::vector<transport::ShardFilePayload> files(channels_.size());
  for (size_t r = 0; r < channels_.size(); ++r) {
    const transport::MessageHeader h = expect(r, MessageKind::kSaveShardsDone, deadline);
    if (h.seq != seq || in_.size() != sizeof(files[r])) {
      throw PeerError(fmt::format("{} answered kSaveShards (seq {}) with seq {} and {} bytes",
                                  channels_[r]->peer_name(), seq, h.seq, in_.size()));
    }
    std::memcpy(&files[r], in_.data(), sizeof(files[r]));
  }
  return files;
}

void RetrievalClient::load_shards(const std::vector<std::string>& paths,
                                  const std::vector<transport::ShardFilePayload>& files,
                                  std::chrono::milliseconds timeout) {
  RA_REQUIRE(paths.size() == channels_.size() && files.size() == channels_.size(),
             "load_shards: {} paths and {} files for {} retrievers", paths.size(), files.size(), channels_.size());
  const uint64_t seq = ++seq_;
  const auto deadline = transport::deadline_after(timeout);
  for (size_t r = 0; r < channels_.size(); ++r) {
    put_shard_request(out_, files[r], paths[r]);
    channels_[r]->send(to_wire(MessageKind::kLoadShards), seq, out_, deadline);
  }
  for (size_t r = 0; r < channels_.size(); ++r) {
    const transport::MessageHeader h = expect(r, MessageKind::kLoadShardsDone, deadline);
    if (h.seq != seq || in_.size() != sizeof(files[r])) {
      throw PeerError(fmt::format("{} answered kLoadShards (seq {}) with seq {} and {} bytes",
                                  channels_[r]->peer_name(), seq, h.seq, in_.size()));
    }
  }
}

transport::MessageHeader RetrievalClient::expect(size_t r, MessageKind kind, transport::Deadline deadline) {
  Channel& ch = *channels_[r];
  const transport::MessageHeader h = ch.recv(in_, deadline);
  if (h.kind == to_wire(MessageKind::kError)) {
    throw PeerError(fmt::format("{} failed: {}", ch.peer_name(),
                                std::string_view(reinterpret_cast<const char*>(in_.data()), in_.size())));
  }
  if (h.kind != to_wire(kind)) {
    throw PeerError(fmt::format("{} sent message kind {} where kind {} was expected", ch.peer_name(), h.kind,
                                to_wire(kind)));
  }
  return h;
}

void RetrievalClient::handshake(uint64_t plan_digest, const std::string& plan_text) {
  transport::HelloPayload hello = transport::make_hello(options_.geometry, plan_digest);
  hello.plan_bytes = plan_text.size();
  WireWriter w(out_);
  w.put(hello);
  w.put_text(plan_text);
  const auto deadline = transport::deadline_after(options_.step_timeout);
  for (Channel* ch : channels_) ch->send(to_wire(MessageKind::kHello), ++seq_, out_, deadline);
  reports_.clear();
  for (size_t r = 0; r < channels_.size(); ++r) {
    expect(r, MessageKind::kHelloAck, deadline);
    const std::string what = "kHelloAck from " + channels_[r]->peer_name();
    reports_.push_back(transport::read_hello_ack(in_, what, hello));
  }
}

void RetrievalClient::send_build(int64_t layer, int64_t first_position, int64_t n_keys, const std::byte* keys,
                                 const std::byte* values, int64_t n_train, const float* train_q, int64_t n_window,
                                 const float* window_q, int list_width, const int32_t* lists, int key_query_width,
                                 const int32_t* key_queries) {
  RA_REQUIRE(list_width >= 0 && (list_width == 0 || lists != nullptr), "send_build: lists of width {} and no ids",
             list_width);
  RA_REQUIRE(key_query_width >= 0 && (key_query_width == 0 || key_queries != nullptr),
             "send_build: key queries of width {} and no ids", key_query_width);
  const RetrievalGeometry& g = options_.geometry;
  const int64_t hd = g.head_dim;
  const int64_t q_dim = g.n_heads * hd;
  const KvWireFormat form = options_.kv_rows;
  if (builds_pending_ == 0) build_started_ = SteadyClock::now();
  const auto deadline = transport::deadline_after(options_.build_timeout);
  for (size_t r = 0; r < channels_.size(); ++r) {
    const auto& kv_heads = options_.owned_kv_heads[r][static_cast<size_t>(layer)];
    transport::BuildPayload b;
    b.layer = static_cast<uint32_t>(layer);
    b.n_train = static_cast<uint32_t>(n_train);
    b.first_position = first_position;
    b.n_keys = n_keys;
    b.n_window = n_window;
    b.list_width = static_cast<uint32_t>(list_width);
    b.key_query_width = static_cast<uint32_t>(key_query_width);
    b.key_rows = static_cast<uint16_t>(form.key);
    b.value_rows = static_cast<uint16_t>(form.value);
    WireWriter w(out_);
    w.put(b);
    for (int64_t kv : kv_heads) {  // gather head kv's rows out of the [n][n_kv_heads] rows, row bytes each
      for (const auto& [m, rows] : {std::pair{keys, form.key}, std::pair{values, form.value}}) {
        const size_t row = transport::wire_row_bytes(rows, hd);
        for (int64_t i = 0; i < n_keys; ++i) w.put_bytes(m + (i * g.n_kv_heads + kv) * row, row);
        w.pad_to_4();
      }
    }
    for (int64_t h : owned_q_heads_[r][static_cast<size_t>(layer)]) {
      for (int64_t i = 0; i < n_train; ++i) w.put_floats(train_q + i * q_dim + h * hd, static_cast<size_t>(hd));
    }
    for (int64_t h : owned_q_heads_[r][static_cast<size_t>(layer)]) {
      for (int64_t i = 0; i < n_window; ++i) w.put_floats(window_q + i * q_dim + h * hd, static_cast<size_t>(hd));
    }
    for (int64_t h : owned_q_heads_[r][static_cast<size_t>(layer)]) {  // [owned q head][n_train][width]
      if (list_width > 0) w.put_int32s(lists + h * n_train * list_width, static_cast<size_t>(n_train * list_width));
    }
    for (int64_t kv : kv_heads) {  // [owned kv head][n_keys][width] of the [n_kv_heads][n_keys][width] block
      if (key_query_width > 0) {
        w.put_int32s(key_queries + kv * n_keys * key_query_width, static_cast<size_t>(n_keys * key_query_width));
      }
    }
    channels_[r]->send(to_wire(MessageKind::kBuild), ++seq_, out_, deadline);
    stats_.build_bytes += static_cast<int64_t>(out_.size());
  }
  ++builds_pending_;
}

void RetrievalClient::wait_builds() {
  const auto deadline = transport::deadline_after(options_.build_timeout);
  for (; builds_pending_ > 0; --builds_pending_) {
    for (size_t r = 0; r < channels_.size(); ++r) expect(r, MessageKind::kBuildDone, deadline);
  }
  stats_.build_seconds += Seconds(SteadyClock::now() - build_started_).count();
}

void RetrievalClient::begin(int64_t layer, int64_t position, const float* q, int64_t evict_position, const float* k,
                            const float* v) {
  const RetrievalGeometry& g = options_.geometry;
  step_started_ = SteadyClock::now();
  if (layer > 0 && layer == step_layer_ + 1 && position == step_position_) {
    stats_.between_layers_seconds += Seconds(step_started_ - step_finished_).count();
  }
  step_position_ = position;
  step_layer_ = layer;
  transport::StepPayload step;
  step.layer = static_cast<uint32_t>(layer);
  step.k = options_.top_k;
  step.ef = options_.ef;
  step.nprobe = options_.nprobe;
  step.position = position;
  step.evict_position = evict_position;
  step.flags = options_.audit_recall ? transport::kStepAuditRecall : 0;
  step.scan_budget = static_cast<uint32_t>(options_.scan_budget);
  WireWriter w(out_);
  w.put(step);
  w.put_floats(q, static_cast<size_t>(g.n_heads * g.head_dim));
  if (evict_position >= 0) {
    w.put_floats(k, static_cast<size_t>(g.n_kv_heads * g.head_dim));
    w.put_floats(v, static_cast<size_t>(g.n_kv_heads * g.head_dim));
  }
  active_.clear();
  ++seq_;
  const auto deadline = transport::deadline_after(options_.step_timeout);
  for (size_t r = 0; r < channels_.size(); ++r) {
    if (owned_q_heads_[r][static_cast<size_t>(layer)].empty()) continue;
    channels_[r]->send(to_wire(MessageKind::kStep), seq_, out_, deadline);
    active_.push_back(r);
  }
}

void RetrievalClient::finish(int64_t layer, float* o, float* lse) {
  const RetrievalGeometry& g = options_.geometry;
  const auto hd = static_cast<size_t>(g.head_dim);
  const auto deadline = transport::deadline_after(options_.step_timeout);
  const auto wait_started = SteadyClock::now();
  std::fill(lse, lse + g.n_heads, kEmptyLse);  // heads whose retriever was not asked this step: empty
  std::fill(o, o + g.n_heads * g.head_dim, 0.0f);
  double slowest = 0;
  int64_t last_received_ns = 0, last_replied_ns = -1;  // the retriever that replied last
  for (size_t r : active_) {
    const transport::MessageHeader h = expect(r, MessageKind::kPartial, deadline);
    const std::string& peer = channels_[r]->peer_name();
    WireReader reader(in_, partial_names_[r]);
    const auto p = reader.get<transport::PartialPayload>();
    const auto& heads = owned_q_heads_[r][static_cast<size_t>(layer)];
    if (h.seq != seq_ || p.layer != layer || p.position != step_position_ || p.n_entries != heads.size()) {
      throw PeerError(fmt::format("{} answered (seq {}, layer {}, position {}, {} heads) to a request for (seq {}, "
                                  "layer {}, position {}, {} heads)",
                                  peer, h.seq, p.layer, p.position, p.n_entries, seq_, layer, step_position_,
                                  heads.size()));
    }
    if (options_.window > 0 && options_.sinks >= 0) {
      const int64_t held = std::max<int64_t>(0, step_position_ + 1 - options_.window - options_.sinks);
      if (p.keys_offloaded != held) {
        throw PeerError(fmt::format("{} holds {} offloaded keys of layer {} at position {}; the GPU keeps sinks {} and "
                                    "a window of {}, which leaves {} (a gap or a repeat between the two sets)",
                                    peer, p.keys_offloaded, layer, step_position_, options_.sinks,
                                    options_.window, held));
      }
    }
    const float* part_lse = reader.floats(heads.size());
    const float* part_o = reader.floats(heads.size() * hd);
    reader.expect_end();
    for (size_t e = 0; e < heads.size(); ++e) {
      const auto head = static_cast<size_t>(heads[e]);
      lse[head] = part_lse[e];
      std::copy(part_o + e * hd, part_o + (e + 1) * hd, o + head * hd);
    }
    slowest = std::max(slowest, p.search_seconds);
    if (p.replied_ns > last_replied_ns) {
      last_replied_ns = p.replied_ns;
      last_received_ns = p.received_ns;
    }
    stats_.distance_computations += p.distance_computations;
    stats_.query_heads_searched += p.n_entries;
    stats_.offloaded_keys = p.keys_offloaded;
    LayerRetrievalStats& per_layer = stats_.layers[static_cast<size_t>(layer)];
    per_layer.distance_computations += p.distance_computations;
    per_layer.keys_offered += static_cast<int64_t>(p.n_entries) * p.keys_offloaded;
    per_layer.recall_hits += p.recall_hits;
    per_layer.recall_wanted += p.recall_wanted;
  }
  step_finished_ = SteadyClock::now();
  stats_.wait_seconds += Seconds(step_finished_ - wait_started).count();
  stats_.remote_seconds += slowest;
  stats_.round_trip_seconds += Seconds(step_finished_ - step_started_).count();
  const auto ns = [](SteadyClock::time_point t) {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
  };
  const int64_t sent_ns = ns(step_started_), seen_ns = ns(step_finished_);
  if (!active_.empty() && sent_ns <= last_received_ns && last_received_ns <= last_replied_ns &&
      last_replied_ns <= seen_ns) {
    stats_.q_out_seconds += 1e-9 * static_cast<double>(last_received_ns - sent_ns);
    stats_.retriever_seconds += 1e-9 * static_cast<double>(last_replied_ns - last_received_ns);
    stats_.partial_back_seconds += 1e-9 * static_cast<double>(seen_ns - last_replied_ns);
    ++stats_.timeline_steps;
  } else if (!active_.empty()) {
    ++stats_.timeline_skipped;
  }
  ++stats_.steps;
}

void RetrievalClient::shutdown(std::chrono::milliseconds timeout) noexcept {
  const auto deadline = transport::deadline_after(timeout);
  for (size_t r = 0; r < channels_.size(); ++r) {
    try {
      channels_[r]->send(to_wire(MessageKind::kShutdown), ++seq_, {}, deadline);
      expect(r, MessageKind::kShutdown, deadline);
    } catch (const std::exception&) {
      // Best effort: the retriever is gone or stuck; its liveness check ends it.
    }
  }
}

}  // namespace ra
