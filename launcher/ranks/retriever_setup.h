#pragma once
// What a retriever rank serves with, from the run's plan: the index kind and knobs of the config's mode,
// its shards, threads and the static set. The ra-cpu-retriever process and in-process pools (ra bench
// accuracy) build their RetrieverService from the same function, so both run the same retriever.

#include <string>

#include "cpu_retriever/retriever_service.h"
#include "launcher/plan/run_plan.h"

namespace ra {

// Rank `rank` (1-based: rank 0 is the worker) of `plan`; `name` names it in logs and errors.
retriever::RetrieverServiceConfig retriever_service_config(const RunPlan& plan, int rank, const std::string& name);

// The retrievers' KV storage: the config's kv_dtype, or with "auto" the checkpoint's dtype.
retriever::KvDtypes retriever_kv_dtypes(const RunPlan& plan);
// The forms in which the worker holds and ships the prefill's keys and values (kBuild; common/
// wire_rows.h), per side, from that side's store dtype: int8 rows for an int8 store (coded on the
// worker or its GPU: about a quarter of float32's bytes); bf16 for a bf16 store of a bf16 checkpoint's KV
// (half the bytes, exact); float32 otherwise (an f16 or f32 store, or KV that bf16 would round).
// model_kv_dtype: the checkpoint's dtype string (Geometry::kv_dtype, e.g. "BF16").
KvWireFormat kv_wire_format(const std::string& model_kv_dtype, retriever::KvDtypes stores);
KvWireFormat kv_wire_format(const RunPlan& plan);  // of the plan's checkpoint and retriever_kv_dtypes

// Whether the worker ships the prefill's queries: the graph trains on them, a scan budget
// (index.scan_fraction) is fitted on them.
bool ships_prefill_queries(const RunConfig& config);
// Training queries per query head the worker ships (PrefillCapture's max_train_queries; 0 = every
// prefill position): the graph's setting; a scan budget alone needs a few.
int64_t prefill_queries_to_ship(const RunConfig& config);

}  // namespace ra
