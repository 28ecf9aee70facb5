#pragma once
// The merge of partial attention states (DESIGN §4), for every query head of a decode step: the GPU's
// static-set partial and the retrievers' partial over the offloaded set become the step's attention.
// One contract, two implementations: this one on the CPU (the CPU backend), merge_partials_cuda.h on
// the GPU (the CUDA backend). Both keep exactly the other side when one side is empty (lse = −inf),
// never reading its o, so an empty side's garbage cannot leak in; empty ∪ empty stays (−inf, 0).
//
//   o_a, o_b:     [n_heads][head_dim] float32; o_a is merged in place
//   lse_a, lse_b: [n_heads] float32, natural log; lse_a is merged in place

#include <cstddef>

namespace ra {

void merge_partials(float* o_a, float* lse_a, const float* o_b, const float* lse_b, size_t n_heads, size_t head_dim);

}  // namespace ra
