// validate(): every field against its allowed range. Each error names the field and the value it got,
// in the words of the key, e.g. "window must be >= 1 (got 0)".

#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "common/error.h"
#include "cpu_retriever/kv_dtype.h"
#include "gpu_worker/model/synthetic_model.h"
#include "transport/messages.h"
#include "gpu_worker/model/utf8.h"
#include "launcher/config/config_schema.h"

namespace ra {
namespace {

using config::FieldType;
using config::in_geometry;
using config::visit_fields;

// The minimum of each integer key, checked in the order given: "<key> must be >= <min> (got <value>)".
struct Minimum {
  std::string_view key;
  int64_t min;
};

void require_minimums(const RunConfig& c, std::initializer_list<Minimum> minimums) {
  for (const Minimum& m : minimums) {
    visit_fields([&](std::string_view key, std::string_view, auto acc) {
      if constexpr (std::is_integral_v<FieldType<decltype(acc)>>) {
        if (key != m.key) return;
        const int64_t value = static_cast<int64_t>(acc(c));
        RA_REQUIRE(value >= m.min, "{} must be >= {} (got {})", key, m.min, value);
      }
    });
  }
}

}  // namespace

void validate(const RunConfig& c) {
  visit_fields([&](std::string_view key, std::string_view, auto acc) {
    if (in_geometry(key) && !c.geometry) return;
    using T = FieldType<decltype(acc)>;
    if constexpr (std::is_same_v<T, std::string>) {
      RA_REQUIRE(utf8_is_valid(acc(c)), "{} is not valid UTF-8 (put raw bytes in a prompt_file)", key);
    } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
      for (const std::string& s : acc(c)) RA_REQUIRE(utf8_is_valid(s), "{} holds an argument that is not valid UTF-8", key);
    }
  });
  RA_REQUIRE(c.prompt.empty() || c.prompt_file.empty(),
             "prompt and prompt_file are exclusive (got prompt of {} bytes and prompt_file '{}')", c.prompt.size(),
             c.prompt_file);
  require_minimums(c, {{"synthetic_prompt_bytes", 1}, {"max_new_tokens", 0}, {"progress_every", 0}});
  RA_REQUIRE(std::isfinite(c.temperature) && c.temperature >= 0.0f, "temperature must be >= 0 (got {})",
             c.temperature);
  RA_REQUIRE(c.top_p > 0.0f && c.top_p <= 1.0f, "top_p must be in (0, 1] (got {})", c.top_p);
  require_minimums(c, {{"sinks", 0}, {"window", 1}, {"index.top_k", 1}, {"index.ef", 0}});

  const IndexConfig& ix = c.index;
  // The graph answers the best top_k keys of all it scored, so its beam may be narrower; HNSW's beam
  // holds its answer.
  RA_REQUIRE(ix.ef == 0 || ix.ef >= ix.top_k || c.mode == AttentionMode::kRetrieval,
             "index.ef must be 0 (the index default) or >= index.top_k ({}) in mode {} (got {})", ix.top_k,
             name(c.mode), ix.ef);
  require_minimums(c, {{"index.nprobe", 0}, {"index.graph_M", 1}, {"index.graph_Kq", 1},
                       {"index.graph_ef_construction", 1}, {"index.graph_connect_max_in_degree", -1},
                       {"index.graph_connect_query_lists", 0},
                       {"index.graph_max_train_queries", 0},
                       {"index.graph_warm_history", 0}, {"index.graph_key_lists_stride", 0},
                       {"index.graph_heads_per_search", 0}, {"index.graph_interleave", 0}, {"index.ivf_nlist", 0},
                       {"index.hnsw_M", 2}, {"index.build_layers", 1}, {"index.hnsw_ef_construction", 1}, {"retrievers", 0}});
  RA_REQUIRE(std::isfinite(ix.scan_fraction) && ix.scan_fraction >= 0.0f && ix.scan_fraction <= 1.0f,
             "index.scan_fraction must be in [0, 1] (0 = off; got {})", ix.scan_fraction);
  RA_REQUIRE(ix.graph_connect_query_lists <= static_cast<int>(transport::kMaxKeyQueryWidth),
             "index.graph_connect_query_lists must be 0 to {} (got {})", transport::kMaxKeyQueryWidth,
             ix.graph_connect_query_lists);
  RA_REQUIRE(ix.graph_expand >= 1 && ix.graph_expand <= 4, "index.graph_expand must be 1 to 4 (got {})",
             ix.graph_expand);
  RA_REQUIRE(ix.graph_merge_queries == 0 || ix.graph_merge_queries == 1,
             "index.graph_merge_queries must be 0 (every query head of the group) or 1 (one) (got {})",
             ix.graph_merge_queries);
  if (c.kv_dtype != "auto") {
    retriever::KvDtypes kv;
    try {
      kv = retriever::parse_kv_dtypes(c.kv_dtype);
    } catch (const Error& e) {
      raise("kv_dtype must be auto, bf16, f16, f32, int8 or key/value (got '{}'): {}", c.kv_dtype, e.what());
    }
    // The graph walks an int8 key store in place: a second 8-bit copy would only cost memory.
    RA_REQUIRE(kv.key != retriever::KvDtype::kQ8 || ix.graph_navigation != GraphNavigation::kInt8 ||
                   c.mode != AttentionMode::kRetrieval,
               "index.graph_navigation int8 walks an 8-bit copy of the keys, but kv_dtype '{}' stores the keys as "
               "int8 already: use graph_navigation exact (the int8 keys are walked in place)", c.kv_dtype);
  }
  RA_REQUIRE(!needs_retrievers(c.mode) || c.retrievers >= 1, "retrievers must be >= 1 in mode {} (got {})",
             name(c.mode), c.retrievers);
  require_minimums(c, {{"worker_threads", 0}, {"retriever_threads", 0}, {"liveness_timeout_ms", 1},
                       {"build_timeout_ms", 1}});
  RA_REQUIRE(!c.mpirun.empty(), "mpirun must name the mpirun executable (got an empty string)");

  if (c.geometry) {
    const SyntheticModelSpec& g = *c.geometry;
    RA_REQUIRE(c.model.empty(), "geometry is for the embedded synthetic model only; remove it or set model to "
               "an empty string (got model '{}')", c.model);
    require_minimums(c, {{"geometry.hidden_size", 1}, {"geometry.n_layers", 1}, {"geometry.n_heads", 1},
                         {"geometry.n_kv_heads", 1}, {"geometry.head_dim", 2}, {"geometry.intermediate_size", 1},
                         {"geometry.max_position_embeddings", 1}});
    RA_REQUIRE(g.n_heads % g.n_kv_heads == 0,
               "geometry.n_heads ({}) must be a multiple of geometry.n_kv_heads ({}) (GQA groups)", g.n_heads,
               g.n_kv_heads);
    RA_REQUIRE(g.head_dim % 2 == 0, "geometry.head_dim must be even for RoPE (got {})", g.head_dim);
  }
}

}  // namespace ra
