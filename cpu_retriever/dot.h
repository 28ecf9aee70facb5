#pragma once
// The inner product every key index scores with, so flat, graph and FAISS-walk scores agree bit for bit.
// Eight independent accumulators let the compiler vectorise the loop with plain SSE2 and without
// -ffast-math (DESIGN §4 forbids it); the summation order is fixed, so results are identical across
// runs and threads.

#include <cstdint>

namespace ra::retriever {

inline float dot_f32(const float* a, const float* b, int64_t dim) {
  float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t j = 0;
  for (; j + 8 <= dim; j += 8) {
    for (int l = 0; l < 8; ++l) s[l] += a[j + l] * b[j + l];
  }
  for (; j < dim; ++j) s[j & 7] += a[j] * b[j];
  return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

}  // namespace ra::retriever
