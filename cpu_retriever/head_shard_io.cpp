// Saving and loading a built HeadShard (issue 18). One record, all values in host byte order
// (shard_io.h: an array is a uint64 count, then the elements; a string likewise, of bytes):
//
//   RecordHeader     magic "RASHARD1", version kShardFormatVersion (2), byte-order mark, value sizes
//   uint64           parameter count P, then P × (string name, string value): the build's parameters
//                    (build_fields below), compared on load with the loading shard's own, in order;
//                    "kv dtype" is kv_dtypes_name: "bf16", or "<key>/<value>" such as "int8/bf16"
//   int64            rows n: the build's keys (rows [0, n) of the store; nothing appended since)
//   uint64, bytes    keys:   n rows of kv_row_bytes(key dtype, head_dim) bytes, as stored (bit for bit:
//                    an int8 row is head_dim int8 codes, then its float32 scale, kv_int8.h)
//   uint64, bytes    values: the same for the values, of the value dtype
//   uint32           index count I: 0 (n = 0), 1 (flat, IVF, HNSW, a graph per kv head) or the group
//                    size (a graph per query head), then I × (uint8 tag, payload):
//                      kTagFlat   nothing: a flat index scores the store's rows
//                      kTagIvf    uint64 byte count, then faiss::write_index's bytes of the IVF-Flat index
//                      kTagHnsw   the same for the HNSW-Flat index
//                      kTagGraph  GraphIndex::save's fields (graph_index_io.cpp)
//   uint32, uint32   scan budgets B (one per scan fraction, 0 without) and indexes per budget (I), then
//                    B × I × {int32 ef, int32 nprobe, float64 scanned_fraction, int32 evaluations}
//   uint64           end mark kEndMark
//
// Version 1 (before int8 rows and separate key and value dtypes) is refused by the header check: build
// the shard again and save it with this build.
//
// What is not saved, and why: the answer histories (a loaded shard's first search is cold, as after a
// kRewind), the graphs' merge state (their tree parents and key norms follow from the adjacency and the
// rows, and load derives them as the build does), and every runtime knob (taken from the loading
// shard's parameters).

#include <fmt/format.h>

#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "common/error.h"
#include "cpu_retriever/flat_index.h"
#include "cpu_retriever/head_shard.h"
#include "cpu_retriever/shard_io.h"
#ifdef RA_HAVE_FAISS
#include "cpu_retriever/faiss_indexes.h"
#endif

namespace ra::retriever {
namespace {

constexpr char kShardMagic[9] = "RASHARD1";
constexpr uint32_t kShardFormatVersion = 2;  // 2: int8 rows, key and value dtypes apart
constexpr uint64_t kEndMark = 0x444e452d44524148ull;  // "HARD-END" in a little-endian file
constexpr uint8_t kTagFlat = 0, kTagIvf = 1, kTagHnsw = 2, kTagGraph = 3;
constexpr uint64_t kMaxFields = 256;

const char* kind_name(IndexKind kind) {
  switch (kind) {
    case IndexKind::kFlat: return "flat";
    case IndexKind::kIvf: return "ivf";
    case IndexKind::kHnsw: return "hnsw";
    case IndexKind::kGraph: return "graph";
  }
  return "?";
}

uint8_t tag_of(IndexKind kind) {
  switch (kind) {
    case IndexKind::kFlat: return kTagFlat;
    case IndexKind::kIvf: return kTagIvf;
    case IndexKind::kHnsw: return kTagHnsw;
    case IndexKind::kGraph: return kTagGraph;
  }
  return kTagFlat;
}

using Fields = std::vector<std::pair<std::string, std::string>>;

// The parameters that shape what a build makes: a loaded shard must have been built with the loading
// shard's own, or it would serve an index its configuration does not describe. Runtime knobs (merges,
// warm history, default beam, capacities, threads) are not among them. Fields that a build ignores
// (e.g. the graph's seed without a training subsample) are left out, so they need not match.
Fields build_fields(int64_t head_dim, KvDtypes dtypes, int group_size, const ShardIndexParams& p) {
  Fields f;
  auto add = [&f](const char* name, const auto& value) { f.emplace_back(name, fmt::format("{}", value)); };
  add("index kind", kind_name(p.kind));
  add("head_dim", head_dim);
  add("kv dtype", kv_dtypes_name(dtypes));
  add("group size", group_size);
  switch (p.kind) {
    case IndexKind::kFlat:
      break;
    case IndexKind::kIvf:
      add("ivf_nlist", p.ivf_nlist);
      add("seed", p.seed);
      break;
    case IndexKind::kHnsw:
      add("hnsw_M", p.hnsw_M);
      add("hnsw_ef_construction", p.hnsw_ef_construction);
      break;
    case IndexKind::kGraph: {
      const GraphBuildParams& g = p.graph;
      add("graph_per_kv_head", p.graph_per_kv_head);
      add("graph.M", g.M);
      add("graph.Kq", g.Kq);
      add("graph.ef_construction", g.ef_construction);
      add("graph.degree_cap", g.degree_cap);
      add("graph.max_train_queries", g.max_train_queries);
      if (g.max_train_queries > 0) add("graph.seed", g.seed);
      add("graph.occlusion", g.occlusion == Occlusion::kL2 ? "l2" : "inner_product");
      add("graph.fill_pruned", g.fill_pruned);
      add("graph.entry_samples", g.entry_samples);
      add("graph.pivots", g.pivots);
      add("graph.pivot_span", g.pivot_span);
      add("graph.key_lists_stride", g.key_lists_stride);
      add("graph.final_prune", g.final_prune);
      if (g.connect_max_in_degree >= 0) add("graph.connect_max_in_degree", g.connect_max_in_degree);
      add("graph.repair_ef", g.repair_ef);
      if (g.repair_ef > 0) {
        add("graph.repair_k", g.repair_k);
        add("graph.repair_stride", g.repair_stride);
        add("graph.repair_extra", g.repair_extra);
      }
      add("graph.int8_navigation", g.int8_navigation);
      break;
    }
  }
  if (p.kind != IndexKind::kFlat) {  // a flat shard fits no budgets (the constructor)
    add("scan_fractions", fmt::format("[{}]", fmt::join(p.scan_fractions, ", ")));
    if (!p.scan_fractions.empty()) add("scan_top_k", p.scan_top_k);
  }
  return f;
}

void check_fields(ShardReader& in, const Fields& want) {
  auto section = in.section("parameters");
  const auto count = in.get<uint64_t>("count");
  in.check(count <= kMaxFields, "count", "{} fields, at most {} expected", count, kMaxFields);
  Fields saved;
  for (uint64_t i = 0; i < count; ++i) {
    std::string name = in.get_string("name");
    std::string value = in.get_string(name.empty() ? std::string_view("value") : std::string_view(name));
    saved.emplace_back(std::move(name), std::move(value));
  }
  for (size_t i = 0; i < std::max(saved.size(), want.size()); ++i) {
    if (i >= saved.size()) in.fail(want[i].first, fmt::format("not saved; configured {}", want[i].second));
    if (i >= want.size()) in.fail(saved[i].first, fmt::format("saved {}; not a parameter here", saved[i].second));
    const auto& [name, value] = saved[i];
    in.check(name == want[i].first, name, "saved where {} is expected (a record of another writer)", want[i].first);
    in.check(value == want[i].second, name, "the shard was built with {}, this one is configured with {}", value,
             want[i].second);
  }
}

void write_rows(ShardWriter& out, const RowArena& rows, int64_t n) {
  const size_t bytes = static_cast<size_t>(n) * rows.row_bytes();
  out.put<uint64_t>(bytes);
  out.put_bytes(rows.data(), bytes);
}

// n rows of dtype at in's position, in place; an int8 row's scale must be one the rule gives (finite, >= 0).
std::span<const std::byte> read_rows(ShardReader& in, const char* field, KvDtype dtype, int64_t n, int64_t dim) {
  const size_t row = kv_row_bytes(dtype, dim), bytes = static_cast<size_t>(n) * row;
  const auto saved = in.get<uint64_t>(field);
  in.check(saved == bytes, field, "{} bytes saved, {} expected", saved, bytes);
  const std::span<const std::byte> rows = in.take(bytes, field);
  for (int64_t i = 0; dtype == KvDtype::kQ8 && i < n; ++i) {
    const float scale = q8_row_scale(reinterpret_cast<const int8_t*>(rows.data() + static_cast<size_t>(i) * row), dim);
    in.check(std::isfinite(scale) && scale >= 0.0f, field, "int8 row {} has scale {}", i, scale);
  }
  return rows;
}

}  // namespace

void HeadShard::save(ShardWriter& out) const {
  RA_REQUIRE(store_.size() == n_,
             "head shard: {} rows were appended since the build; a saved shard holds the build's {} rows only "
             "(save before the first eviction)",
             store_.size() - n_, n_);
  write_record_header(out, kShardMagic, kShardFormatVersion);
  const Fields fields = build_fields(head_dim_, store_.dtypes(), group_size_, params_);
  out.put<uint64_t>(fields.size());
  for (const auto& [name, value] : fields) {
    out.put_string(name);
    out.put_string(value);
  }
  out.put<int64_t>(n_);
  write_rows(out, *store_.keys(), n_);
  write_rows(out, store_.values(), n_);

  out.put<uint32_t>(static_cast<uint32_t>(indexes_.size()));
  for (const auto& index : indexes_) {
    out.put<uint8_t>(tag_of(params_.kind));
    switch (params_.kind) {
      case IndexKind::kFlat:
        break;
      case IndexKind::kGraph:
        static_cast<const GraphIndex&>(*index).save(out);
        break;
      case IndexKind::kIvf:
      case IndexKind::kHnsw: {
#ifdef RA_HAVE_FAISS
        const size_t at = out.size();
        out.put<uint64_t>(0);  // the byte count, once written
        write_faiss_index(*index, out.bytes());
        out.patch<uint64_t>(at, out.size() - at - sizeof(uint64_t));
        break;
#else
        raise("this build has no FAISS: the ivf and hnsw modes are unavailable (install libfaiss-dev and rebuild)");
#endif
      }
    }
  }

  out.put<uint32_t>(static_cast<uint32_t>(budgets_.size()));
  out.put<uint32_t>(budgets_.empty() ? 0 : static_cast<uint32_t>(budgets_.front().size()));
  for (const auto& per_index : budgets_) {
    for (const ScanBudget& b : per_index) {
      out.put<int32_t>(b.ef);
      out.put<int32_t>(b.nprobe);
      out.put<double>(b.scanned_fraction);
      out.put<int32_t>(b.evaluations);
    }
  }
  out.put<uint64_t>(kEndMark);
}

std::unique_ptr<HeadShard> HeadShard::load(ShardReader& in, int64_t head_dim, KvDtypes dtypes, int group_size,
                                           const ShardIndexParams& params) {
  RA_REQUIRE(head_dim > 0 && group_size >= 1, "head shard: bad sizes (head_dim = {}, group = {})", head_dim,
             group_size);
  read_record_header(in, kShardMagic, kShardFormatVersion);
  check_fields(in, build_fields(head_dim, dtypes, group_size, params));

  // The rows. n is bounded by the bytes left before the store reserves room for it.
  const size_t key_bytes = kv_row_bytes(dtypes.key, head_dim), value_bytes = kv_row_bytes(dtypes.value, head_dim);
  const auto n = in.get<int64_t>("rows");
  in.check(n >= 0 && static_cast<uint64_t>(n) <= in.left() / (key_bytes + value_bytes), "rows",
           "{} rows of {} bytes (keys and values), {} bytes left", n, key_bytes + value_bytes, in.left());
  const std::span<const std::byte> keys = read_rows(in, "keys", dtypes.key, n, head_dim);
  const std::span<const std::byte> values = read_rows(in, "values", dtypes.value, n, head_dim);
  std::unique_ptr<HeadShard> shard(new HeadShard(Empty{}, head_dim, dtypes, n, group_size, params));
  shard->store_.append_raw(keys.data(), values.data(), n);

  // The indexes, as many as the build makes.
  const bool per_member = params.kind == IndexKind::kGraph && !params.graph_per_kv_head;
  const uint32_t expected = n == 0 ? 0 : per_member ? static_cast<uint32_t>(group_size) : 1;
  const auto count = in.get<uint32_t>("index count");
  in.check(count == expected, "index count",
           "{} saved, a {} shard of {} rows and group {} has {}", count, kind_name(params.kind), n, group_size,
           expected);
  GraphBuildParams gp;
  const int64_t shard_key = params.kind == IndexKind::kGraph && n > 0 ? shard->init_graphs(params, gp) : 0;
  const RowArena& rows = *shard->store_.keys();
  for (uint32_t i = 0; i < count; ++i) {
    auto section = in.section(fmt::format("index {}", i));
    const auto tag = in.get<uint8_t>("tag");
    in.check(tag == tag_of(params.kind), "tag",
             "{} saved, {} expected for a {} index", tag, tag_of(params.kind), kind_name(params.kind));
    switch (params.kind) {
      case IndexKind::kFlat:
        shard->indexes_.push_back(std::make_unique<FlatIndex>(rows.data(), rows.dtype(), n, head_dim));
        break;
      case IndexKind::kGraph:
        gp.merge_stagger_key = per_member ? shard_key * group_size + i : shard_key;  // as the build staggers
        shard->indexes_.push_back(GraphIndex::load(in, shard->store_.keys(), n, gp));
        break;
      case IndexKind::kIvf:
      case IndexKind::kHnsw: {
#ifdef RA_HAVE_FAISS
        // Counted first, so that a cut record never reaches FAISS's reader (which leaks when it throws).
        const auto bytes = in.get<uint64_t>("faiss bytes");
        in.check(bytes <= in.left(), "faiss bytes", "{} bytes left, {} needed", in.left(), bytes);
        const std::span<const std::byte> blob = in.take(static_cast<size_t>(bytes), "faiss bytes");
        std::unique_ptr<KeyIndex> index = params.kind == IndexKind::kIvf ? read_ivf_flat_index(blob, in.context())
                                                                         : read_hnsw_flat_index(blob, in.context());
        in.check(index->size() == n && index->dim() == head_dim, "faiss index",
                 "{} keys of dim {}, the shard holds {} of dim {}", index->size(), index->dim(), n, head_dim);
        shard->indexes_.push_back(std::move(index));
        break;
#else
        raise("this build has no FAISS: the ivf and hnsw modes are unavailable (install libfaiss-dev and rebuild)");
#endif
      }
    }
  }

  // The scan budgets: one per fraction (none for a flat or an empty shard), each with every index's knob.
  {
    auto section = in.section("scan budgets");
    const auto budgets = in.get<uint32_t>("count");
    const auto per_budget = in.get<uint32_t>("indexes");
    const bool fitted = !params.scan_fractions.empty() && params.kind != IndexKind::kFlat && n > 0;
    const size_t want = fitted ? params.scan_fractions.size() : 0;
    in.check(budgets == want && (budgets == 0 || per_budget == count), "count",
             "{} budgets of {} indexes saved, {} of {} expected", budgets, per_budget, want, count);
    for (uint32_t b = 0; b < budgets; ++b) {
      std::vector<ScanBudget>& per_index = shard->budgets_.emplace_back();
      for (uint32_t i = 0; i < per_budget; ++i) {
        ScanBudget s;
        s.ef = in.get<int32_t>("ef");
        s.nprobe = in.get<int32_t>("nprobe");
        s.scanned_fraction = in.get<double>("scanned_fraction");
        s.evaluations = in.get<int32_t>("evaluations");
        in.check(s.ef >= 0 && s.nprobe >= 0, "knobs", "ef {}, nprobe {}", s.ef, s.nprobe);
        per_index.push_back(s);
      }
    }
  }
  const auto end = in.get<uint64_t>("end mark");
  in.check(end == kEndMark, "end mark", "{:#018x}, not {:#018x}", end, kEndMark);
  return shard;
}

}  // namespace ra::retriever
