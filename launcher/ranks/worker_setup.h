#pragma once
// What the worker rank does before it decodes, whether it decodes one prompt (worker_main.cpp) or
// serves (serve_rank.cpp): check the model against the plan, and configure its RetrievalClient.

#include "gpu_worker/model/model.h"
#include "gpu_worker/offload/retrieval_client.h"
#include "launcher/plan/run_plan.h"

namespace ra {

// Throws ra::Error naming the first geometry field in which `model` differs from what the plan (and so
// every retriever) assumed.
void check_geometry(const RunPlan& plan, const Model& model);

// The RetrievalClient of `plan` for a model of `config`: geometry, the (layer, kv head) shards of every
// retriever, the search knobs and the build deadline.
RetrievalClientOptions retrieval_client_options(const RunPlan& plan, const ModelConfig& config);

}  // namespace ra
