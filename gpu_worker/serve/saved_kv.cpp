#include "gpu_worker/serve/saved_kv.h"

#include <fmt/format.h>

#include <cstring>

#include "common/error.h"

namespace ra::serve {
namespace {

constexpr const char* kWorkerKv = "worker-kv.bin";
constexpr const char* kLogits = "logits.bin";

// Floats of k (or v) for `range`: [n_layers][n_kv_heads][end - begin][head_dim].
size_t range_floats(const ModelConfig& mc, const KvRange& range) {
  return static_cast<size_t>(mc.n_layers * mc.n_kv_heads * (range.end - range.begin) * mc.head_dim);
}

std::string describe(std::span<const KvRange> ranges) {
  std::string out;
  for (const KvRange& r : ranges) out += fmt::format("{}[{}, {})", out.empty() ? "" : " + ", r.begin, r.end);
  return out.empty() ? "none" : out;
}

}  // namespace

void save_worker_kv(ContextWriter& writer, const Backend& backend, std::span<const KvRange> ranges) {
  const ModelConfig& mc = backend.config();
  WorkerKvHeader h;
  h.n_ranges = static_cast<uint32_t>(ranges.size());
  h.n_layers = mc.n_layers;
  h.n_kv_heads = mc.n_kv_heads;
  h.head_dim = mc.head_dim;
  writer.open(kWorkerKv);
  writer.write(&h, sizeof(h));
  for (const KvRange& r : ranges) {
    const int64_t pair[2] = {r.begin, r.end};
    writer.write(pair, sizeof(pair));
  }
  std::vector<float> k, v;
  for (const KvRange& r : ranges) {
    k.resize(range_floats(mc, r));
    v.resize(k.size());
    backend.read_kv(r.begin, r.end, k, v);
    writer.write_floats(k.data(), k.size());
    writer.write_floats(v.data(), v.size());
  }
  writer.close();
}

void load_worker_kv(const ContextReader& reader, Backend& backend, std::span<const KvRange> expected,
                    const std::string& why) {
  const ModelConfig& mc = backend.config();
  const std::string path = reader.path(kWorkerKv);
  const std::vector<std::byte> bytes = reader.read(kWorkerKv);
  const auto h = read_header<WorkerKvHeader>(bytes, path);
  RA_REQUIRE(h.n_layers == mc.n_layers && h.n_kv_heads == mc.n_kv_heads && h.head_dim == mc.head_dim,
             "{}: fields 'n_layers', 'n_kv_heads', 'head_dim' are {}, {}, {}; the model has {}, {}, {}", path,
             h.n_layers, h.n_kv_heads, h.head_dim, mc.n_layers, mc.n_kv_heads, mc.head_dim);
  RA_REQUIRE(h.n_ranges == expected.size(), "{}: field 'n_ranges' is {}, but {} needs {} ({})", path, h.n_ranges, why,
             expected.size(), describe(expected));
  size_t at = sizeof(h);
  RA_REQUIRE(bytes.size() >= at + expected.size() * 2 * sizeof(int64_t), "{}: shorter than its range table", path);
  std::vector<KvRange> saved(expected.size());
  for (KvRange& r : saved) {
    int64_t pair[2];
    std::memcpy(pair, bytes.data() + at, sizeof(pair));
    at += sizeof(pair);
    r = {pair[0], pair[1]};
  }
  for (size_t i = 0; i < saved.size(); ++i) {
    RA_REQUIRE(saved[i].begin == expected[i].begin && saved[i].end == expected[i].end,
               "{}: field 'ranges' is {}, but {} needs {}", path, describe(saved), why, describe(expected));
  }
  size_t want = at;
  for (const KvRange& r : expected) want += 2 * sizeof(float) * range_floats(mc, r);
  RA_REQUIRE(bytes.size() == want, "{}: {} bytes, its header describes {}", path, bytes.size(), want);
  std::vector<float> k, v;
  for (const KvRange& r : expected) {
    const size_t floats = range_floats(mc, r);
    k.resize(floats);
    v.resize(floats);
    std::memcpy(k.data(), bytes.data() + at, floats * sizeof(float));
    std::memcpy(v.data(), bytes.data() + at + floats * sizeof(float), floats * sizeof(float));
    at += 2 * floats * sizeof(float);
    backend.write_kv(r.begin, r.end, k, v);
  }
}

void save_logits(ContextWriter& writer, std::span<const float> logits) {
  LogitsHeader h;
  h.vocab_size = static_cast<int64_t>(logits.size());
  writer.open(kLogits);
  writer.write(&h, sizeof(h));
  writer.write_floats(logits.data(), logits.size());
  writer.close();
}

void load_logits(const ContextReader& reader, int64_t vocab_size, std::vector<float>& logits) {
  const std::string path = reader.path(kLogits);
  const std::vector<std::byte> bytes = reader.read(kLogits);
  const auto h = read_header<LogitsHeader>(bytes, path);
  RA_REQUIRE(h.vocab_size == vocab_size && bytes.size() == sizeof(h) + static_cast<size_t>(h.vocab_size) * sizeof(float),
             "{}: field 'vocab_size' is {} ({} bytes); the model has {}", path, h.vocab_size, bytes.size(), vocab_size);
  logits.resize(static_cast<size_t>(vocab_size));
  std::memcpy(logits.data(), bytes.data() + sizeof(h), logits.size() * sizeof(float));
}

}  // namespace ra::serve
