#include "launcher/ranks/worker_setup.h"

#include <chrono>
#include <utility>
#include <vector>

#include "common/error.h"
#include "launcher/ranks/retriever_setup.h"

namespace ra {

void check_geometry(const RunPlan& plan, const Model& model) {
  const Geometry actual = make_geometry(model.config, model.weight_dtype);
  const Geometry& p = plan.geometry;
  for_each_geometry_field([&](const char* name, auto field) {
    RA_REQUIRE(p.*field == actual.*field, "the model {} has {} = {}, but the plan says {}", model.source, name,
               actual.*field, p.*field);
  });
}

RetrievalClientOptions retrieval_client_options(const RunPlan& plan, const ModelConfig& mc) {
  const RunConfig& c = plan.config;
  RetrievalClientOptions o;
  o.geometry = {mc.n_layers, mc.n_heads, mc.n_kv_heads, mc.head_dim, mc.attn_scale()};
  for (int r = 0; r < plan.num_retrievers(); ++r) {
    std::vector<std::vector<int64_t>> layers;
    for (int64_t l = 0; l < mc.n_layers; ++l) layers.push_back(plan.owned_kv_heads(r, l));
    o.owned_kv_heads.push_back(std::move(layers));
  }
  o.top_k = c.index.top_k;
  o.ef = c.index.ef;
  o.nprobe = c.index.nprobe;
  o.build_timeout = std::chrono::milliseconds(c.build_timeout_ms);
  o.kv_rows = kv_wire_format(plan);
  o.sinks = c.sinks;
  o.window = c.window;
  return o;
}

}  // namespace ra
