#include "gpu_worker/attention/merge_partials.h"

#include "common/partial_state.h"

namespace ra {

void merge_partials(float* o_a, float* lse_a, const float* o_b, const float* lse_b, size_t n_heads, size_t head_dim) {
  for (size_t h = 0; h < n_heads; ++h) merge_into(lse_a[h], o_a + h * head_dim, lse_b[h], o_b + h * head_dim, head_dim);
}

}  // namespace ra
