#pragma once
// The small synthetic model most unit tests decode with: 2 layers, 4 query heads over 2 KV heads of
// dimension 16, hidden 64; each test picks the MLP width, the context and the weight seed it needs.

#include <cstdint>

#include "gpu_worker/model/synthetic_model.h"

namespace ra::test {

inline SyntheticModelSpec small_synthetic_spec(int64_t intermediate_size, int64_t max_position_embeddings,
                                               uint64_t seed = SyntheticModelSpec{}.seed) {
  return {.hidden_size = 64, .n_layers = 2, .n_heads = 4, .n_kv_heads = 2, .head_dim = 16,
          .intermediate_size = intermediate_size, .max_position_embeddings = max_position_embeddings, .seed = seed};
}

}  // namespace ra::test
