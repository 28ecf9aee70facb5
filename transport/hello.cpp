#include "transport/hello.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cstring>

#include "transport/wire.h"

namespace ra::transport {
namespace {

using json = nlohmann::json;

template <typename T>
T report_key(const json& j, const char* key, std::string_view what) {
  const auto it = j.find(key);
  if (it == j.end()) throw PeerError(fmt::format("{}: the report text has no '{}'", what, key));
  try {
    return it->get<T>();
  } catch (const json::exception&) {
    throw PeerError(fmt::format("{}: the report text's '{}' has the wrong type ({})", what, key,
                                it->dump(-1, ' ', false, json::error_handler_t::replace)));
  }
}

}  // namespace

std::string describe_hello_mismatch(const HelloPayload& w, const HelloPayload& r) {
  std::string out;
  auto field = [&](const char* name, auto a, auto b) {
    if (a != b) out += fmt::format("{}{}: worker {}, retriever {}", out.empty() ? "" : "; ", name, a, b);
  };
  field("magic", w.magic, r.magic);
  field("protocol_version", w.protocol_version, r.protocol_version);
  field("header_bytes", w.header_bytes, r.header_bytes);
  field("n_layers", w.n_layers, r.n_layers);
  field("n_heads", w.n_heads, r.n_heads);
  field("n_kv_heads", w.n_kv_heads, r.n_kv_heads);
  field("head_dim", w.head_dim, r.head_dim);
  field("scale", w.scale, r.scale);
  if (w.plan_digest != r.plan_digest) {
    out += fmt::format("{}plan_digest: worker {:#018x}, retriever {:#018x} (the ranks were given different plans)",
                       out.empty() ? "" : "; ", w.plan_digest, r.plan_digest);
  }
  return out;
}

int RetrieverReport::node_cores() const {
  if (numa_node >= 0 && numa_node < numa_nodes()) return cores_per_node[static_cast<size_t>(numa_node)];
  int all = 0;
  for (int c : cores_per_node) all += c;
  return all;
}

void write_hello_ack(const HelloPayload& hello, const RetrieverReport& report, std::vector<std::byte>& out) {
  const json text = {{"host", report.host},     {"transport", report.transport},
                     {"cores_per_node", report.cores_per_node},
                     {"binding", report.binding}, {"cpus", report.cpus}};
  // replace: a host name or binding line that is not UTF-8 must not make the handshake throw.
  const std::string t = text.dump(-1, ' ', false, json::error_handler_t::replace);
  RetrieverReportPayload fixed;
  fixed.rank = report.rank;
  fixed.pid = static_cast<uint64_t>(report.pid);
  fixed.numa_nodes = report.numa_nodes();
  fixed.numa_node = report.numa_node;
  fixed.threads = report.threads;
  fixed.pinned = report.pinned ? 1 : 0;
  fixed.text_bytes = t.size();
  WireWriter w(out);
  w.put(hello);
  w.put(fixed);
  w.put_text(t);
}

RetrieverReport read_hello_ack(std::span<const std::byte> payload, std::string_view what, const HelloPayload& sent) {
  // The protocol first, by its leading fields: an ack of another version may be shorter or longer than
  // this build's (before version 7 it was a HelloPayload alone), and only the version says why.
  uint32_t lead[2] = {0, 0};  // HelloPayload::magic, ::protocol_version
  if (payload.size() >= sizeof(lead)) std::memcpy(lead, payload.data(), sizeof(lead));
  if (payload.size() >= sizeof(lead) && (lead[0] != sent.magic || lead[1] != sent.protocol_version)) {
    throw PeerError(fmt::format("{}: magic {:#x}, protocol_version {}, but this worker speaks magic {:#x}, "
                                "protocol_version {} (the retriever is of another build: install the same build "
                                "of ra-cpu-retriever on every host)",
                                what, lead[0], lead[1], sent.magic, sent.protocol_version));
  }
  WireReader r(payload, what);
  const auto hello = r.get<HelloPayload>();
  if (const std::string diff = describe_hello_mismatch(sent, hello); !diff.empty()) {
    throw PeerError(fmt::format("{}: {}", what, diff));
  }
  uint32_t report_bytes = 0;  // read before the struct: a report of another layout has other fields
  if (r.remaining() >= sizeof(report_bytes)) std::memcpy(&report_bytes, payload.data() + sizeof(hello), sizeof(report_bytes));
  if (r.remaining() >= sizeof(report_bytes) && report_bytes != sizeof(RetrieverReportPayload)) {
    throw PeerError(fmt::format("{}: report_bytes {}, but this worker's RetrieverReportPayload is {} bytes (the "
                                "retriever is of another build)",
                                what, report_bytes, sizeof(RetrieverReportPayload)));
  }
  const auto fixed = r.get<RetrieverReportPayload>();
  if (fixed.text_bytes > r.remaining()) {
    throw PeerError(fmt::format("{}: truncated message (a report text of {} bytes, {} left)", what, fixed.text_bytes,
                                r.remaining()));
  }
  const std::string_view t = r.text(static_cast<size_t>(fixed.text_bytes));
  r.expect_end();
  json text;
  try {
    text = json::parse(t);
  } catch (const json::exception& e) {
    throw PeerError(fmt::format("{}: the report text is not JSON ({})", what, e.what()));
  }
  if (!text.is_object()) throw PeerError(fmt::format("{}: the report text is not a JSON object", what));
  RetrieverReport report;
  report.rank = fixed.rank;
  report.pid = static_cast<int64_t>(fixed.pid);
  report.numa_node = fixed.numa_node;
  report.threads = fixed.threads;
  report.pinned = fixed.pinned != 0;
  report.host = report_key<std::string>(text, "host", what);
  report.transport = report_key<std::string>(text, "transport", what);
  report.cores_per_node = report_key<std::vector<int>>(text, "cores_per_node", what);
  report.binding = report_key<std::string>(text, "binding", what);
  report.cpus = report_key<std::vector<int>>(text, "cpus", what);
  if (fixed.pinned > 1 || fixed.threads < 1 || fixed.rank < 0 || fixed.numa_nodes != report.numa_nodes() ||
      fixed.numa_node < -1 || fixed.numa_node >= fixed.numa_nodes) {
    throw PeerError(fmt::format("{}: a report of rank {}, {} threads, pinned {}, NUMA node {} of {} ({} listed in its "
                                "text): out of range or inconsistent",
                                what, fixed.rank, fixed.threads, fixed.pinned, fixed.numa_node, fixed.numa_nodes,
                                report.numa_nodes()));
  }
  return report;
}

}  // namespace ra::transport
