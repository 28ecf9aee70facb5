#include "launcher/ranks/retriever_setup.h"

#include "common/error.h"

namespace ra {

retriever::RetrieverServiceConfig retriever_service_config(const RunPlan& plan, int rank, const std::string& name) {
  const RunConfig& c = plan.config;
  const Geometry& g = plan.geometry;
  retriever::RetrieverServiceConfig s;
  s.geometry = {g.n_layers, g.n_heads, g.n_kv_heads, g.head_dim, g.scale};
  s.dtype = retriever_kv_dtypes(plan);
  for (int64_t l = 0; l < g.n_layers; ++l) s.owned_kv_heads.push_back(plan.owned_kv_heads(rank - 1, l));
  switch (c.mode) {
    case AttentionMode::kIvf: s.index.kind = retriever::IndexKind::kIvf; break;
    case AttentionMode::kHnsw: s.index.kind = retriever::IndexKind::kHnsw; break;
    case AttentionMode::kRetrieval: s.index.kind = retriever::IndexKind::kGraph; break;
    default: s.index.kind = retriever::IndexKind::kFlat; break;
  }
  s.index.graph.M = c.index.graph_M;
  s.index.graph.Kq = c.index.graph_Kq;
  s.index.graph.ef_construction = c.index.graph_ef_construction;
  s.index.graph.connect_max_in_degree = c.index.graph_connect_max_in_degree;
  s.index.graph.connect_query_lists = c.index.graph_connect_query_lists;
  s.index.graph.max_train_queries = 0;  // the worker already sent at most graph_max_train_queries
  s.index.graph.threads = plan.retrievers[static_cast<size_t>(rank - 1)].threads;
  // Evicted tokens join each graph's flat tail; past this many a background merge links them in.
  s.index.graph.merge_threshold = 256;
  s.index.warm_history = c.index.graph_warm_history;
  s.index.graph.key_lists_stride = c.index.graph_key_lists_stride;
  s.index.graph_per_kv_head = c.index.graph_heads_per_search > 0;
  s.search_group = c.index.graph_heads_per_search;
  s.search_interleave = c.index.graph_interleave;
  s.search_expand = c.index.graph_expand;
  s.index.merge_one_query = c.index.graph_merge_queries == 1;
  s.index.graph.int8_navigation = c.index.graph_navigation == GraphNavigation::kInt8;
  s.sinks = c.sinks;
  s.window = c.window;  // the evicted tokens' queries (and their answers) are kept this long for the graph merge
  // A merged token's query list: its decode answer plus the keys that were in the GPU's window then.
  s.index.graph.merge_recent_keys = static_cast<int>(c.window);
  if (c.index.scan_fraction > 0.0f) s.index.scan_fractions = {c.index.scan_fraction};
  s.index.scan_top_k = c.index.top_k;
  s.index.ivf_nlist = c.index.ivf_nlist;
  s.index.hnsw_M = c.index.hnsw_M;
  s.index.hnsw_ef_construction = c.index.hnsw_ef_construction;
  s.index.seed = c.seed;
  s.threads = plan.retrievers[static_cast<size_t>(rank - 1)].threads;
  s.build_layers = c.index.build_layers;
  s.plan_digest = plan_digest(plan);
  s.name = name;
  return s;
}

retriever::KvDtypes retriever_kv_dtypes(const RunPlan& plan) {
  if (plan.config.kv_dtype == "auto") return retriever::kv_dtype_for(plan.geometry.kv_dtype);
  return retriever::parse_kv_dtypes(plan.config.kv_dtype);  // e.g. int8: a million tokens' KV in RAM
}

KvWireFormat kv_wire_format(const std::string& model_kv_dtype, retriever::KvDtypes stores) {
  const auto side = [&](retriever::KvDtype store) {
    if (store == retriever::KvDtype::kQ8) return WireRows::kQ8;
    if (store == retriever::KvDtype::kBF16 && model_kv_dtype == "BF16") return WireRows::kBF16;
    return WireRows::kF32;
  };
  return {side(stores.key), side(stores.value)};
}

KvWireFormat kv_wire_format(const RunPlan& plan) {
  return kv_wire_format(plan.geometry.kv_dtype, retriever_kv_dtypes(plan));
}

bool ships_prefill_queries(const RunConfig& c) {
  return c.mode == AttentionMode::kRetrieval ||
         (c.index.scan_fraction > 0.0f && (c.mode == AttentionMode::kIvf || c.mode == AttentionMode::kHnsw));
}

int64_t prefill_queries_to_ship(const RunConfig& c) {
  if (c.mode == AttentionMode::kRetrieval) return c.index.graph_max_train_queries;
  constexpr int64_t kBudgetQueries = 256;  // evenly spaced; a scan budget is fitted on the latest 32
  return kBudgetQueries;
}

}  // namespace ra
