#include "gpu_worker/backend/backend.h"

#include <vector>

#include "common/error.h"
#include "gpu_worker/decode/sampler.h"

namespace ra {

int32_t Backend::decode_sample(int32_t token, const SamplingParams& params, uint64_t step, std::span<float> logits) {
  std::vector<float> own;
  if (logits.empty()) {
    own.resize(static_cast<size_t>(config().vocab_size));
    logits = own;
  }
  const int32_t one[1] = {token};
  forward(one, logits);
  std::vector<float> scratch(logits.begin(), logits.end());  // sampling overwrites its input
  return Sampler(params).next_at(scratch, step);
}

std::vector<double> Backend::time_decode_steps(int) { return {}; }

void Backend::truncate(int64_t position) {
  raise("returning to position {} of the KV cache (reusing a prebuilt context) is not supported by the {} backend",
        position, name());
}

bool Backend::can_truncate_to(int64_t position) const {
  return can_truncate() && 0 <= position && position <= this->position();
}

void Backend::read_kv(int64_t begin, int64_t end, std::span<float>, std::span<float>) const {
  raise("reading the KV of positions [{}, {}) (saving a context) is not supported by the {} backend", begin, end,
        name());
}

void Backend::write_kv(int64_t begin, int64_t end, std::span<const float>, std::span<const float>) {
  raise("writing the KV of positions [{}, {}) (loading a saved context) is not supported by the {} backend", begin,
        end, name());
}

}  // namespace ra
