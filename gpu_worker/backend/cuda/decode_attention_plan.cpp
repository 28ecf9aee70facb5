// Host-side planning of split-K decode attention (compiled by the host compiler, so fmt stays out of
// nvcc). The kernels in decode_attention.cu trust these choices; the constants below mirror theirs.

#include <algorithm>

#include "common/error.h"
#include "gpu_worker/backend/cuda/decode_attention.h"

namespace ra::cuda {
namespace {

// Mirrors of decode_attention.cu: a split never gets fewer than 4 blocks of 16 keys (one block per
// warp), the tensor-core kernel is sized for 2 resident CTAs per SM (96 KiB of shared memory each),
// and the generic kernel (128 threads, ~4 KiB) for about 4.
constexpr int64_t kMinSplitKeys = 64;
constexpr int kTensorCoreCtasPerSm = 2;
constexpr int kGenericCtasPerSm = 4;

bool tensor_core_shape(DType dtype, int head_dim, int group) {
  return dtype == DType::kBF16 && (head_dim == 64 || head_dim == 128) && group <= 8;
}

// Splits per CTA row so the grid fills the machine in one wave, and no more than the capacity can
// ever give work to.
int choose_splits(int ctas_per_sm, int sm_count, int rows, int64_t kv_capacity) {
  const int64_t fill = std::max<int64_t>(1, static_cast<int64_t>(ctas_per_sm) * sm_count / rows);
  const int64_t useful = std::max<int64_t>(1, (kv_capacity + kMinSplitKeys - 1) / kMinSplitKeys);
  return static_cast<int>(std::min<int64_t>({fill, useful, kDecodeAttentionMaxSplits}));
}

}  // namespace

DecodeAttentionPlan plan_decode_attention(int n_heads, int n_kv_heads, int head_dim, int64_t kv_capacity,
                                          DType kv_dtype, int sm_count) {
  RA_REQUIRE(n_heads > 0 && n_kv_heads > 0 && n_heads % n_kv_heads == 0,
             "decode_attention: n_heads ({}) must be a positive multiple of n_kv_heads ({})", n_heads, n_kv_heads);
  RA_REQUIRE(head_dim >= 8 && head_dim <= 256 && head_dim % 8 == 0,
             "decode_attention: head_dim {} is not supported (a multiple of 8 up to 256)", head_dim);
  RA_REQUIRE(kv_capacity > 0, "decode_attention: kv_capacity must be positive, got {}", kv_capacity);
  RA_REQUIRE(sm_count > 0, "decode_attention: sm_count must be positive, got {}", sm_count);

  DecodeAttentionPlan plan;
  plan.n_heads = n_heads;
  plan.n_kv_heads = n_kv_heads;
  plan.head_dim = head_dim;
  plan.group = n_heads / n_kv_heads;
  plan.kv_capacity = kv_capacity;
  plan.kv_dtype = kv_dtype;
  if (tensor_core_shape(kv_dtype, head_dim, plan.group)) {
    plan.kernel = DecodeAttentionKernel::kTensorCore;
    plan.max_splits = choose_splits(kTensorCoreCtasPerSm, sm_count, n_kv_heads, kv_capacity);
  } else {
    plan.kernel = DecodeAttentionKernel::kGeneric;
    plan.max_splits = choose_splits(kGenericCtasPerSm, sm_count, n_heads, kv_capacity);
  }
  const size_t partials = static_cast<size_t>(plan.max_splits) * static_cast<size_t>(n_heads);
  const size_t o_bytes = partials * static_cast<size_t>(head_dim) * sizeof(float);
  plan.lse_offset = (o_bytes + 255) / 256 * 256;
  plan.workspace_bytes = plan.lse_offset + partials * sizeof(float);
  return plan;
}

}  // namespace ra::cuda
