#pragma once
// The worker's own files of a saved context (context_files.h), which both engines write and read:
// worker-kv.bin (the backend's KV of some position ranges) and logits.bin (the last token's logits).

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "gpu_worker/backend/backend.h"
#include "gpu_worker/serve/context_files.h"

namespace ra::serve {

struct KvRange {
  int64_t begin = 0, end = 0;  // positions [begin, end)
};

// worker-kv.bin: WorkerKvHeader, the ranges as {int64 begin, int64 end}, then per range k, v
// [n_layers][n_kv_heads][end - begin][head_dim] float32 (Backend::read_kv).
void save_worker_kv(ContextWriter& writer, const Backend& backend, std::span<const KvRange> ranges);

// Checks worker-kv.bin against the backend's model and the ranges this server needs (`expected`; `why`
// says why, for the error: "17 tokens with sinks 4 and window 8"), then writes each range into the
// backend (Backend::write_kv, in order). Throws ra::Error naming the file and the field.
void load_worker_kv(const ContextReader& reader, Backend& backend, std::span<const KvRange> expected,
                    const std::string& why);

// logits.bin: LogitsHeader, then [vocab_size] float32.
void save_logits(ContextWriter& writer, std::span<const float> logits);
// Reads logits.bin into `logits` ([vocab_size] float32); throws naming the file and field.
void load_logits(const ContextReader& reader, int64_t vocab_size, std::vector<float>& logits);

}  // namespace ra::serve
